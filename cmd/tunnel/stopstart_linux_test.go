package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestStopWhileStarting: a stop signal while the configuration still loads
// ends the process at once, with status 0 and a line that says so. Here
// the load waits on a plugin URL whose server never answers; in life it
// was a plugin whose compile nothing interrupts (seconds for a large
// module), and the tunnel waited for it, deaf to SIGTERM and SIGINT. (A
// configuration FIFO once stood in for it: it is refused now, at once.)
func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			asked := make(chan struct{}, 1)
			stop := make(chan struct{})
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked <- struct{}{}
				<-stop // the module never comes
			}))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			srv.StartTLS()
			defer srv.Close()
			defer close(stop)
			dir := t.TempDir()
			ca := filepath.Join(dir, "ca.pem")
			path := filepath.Join(dir, "tunnel.hcl")
			sum := sha256.Sum256([]byte(t.Name() + dir)) // never in a cache
			if os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644) != nil ||
				os.WriteFile(path, []byte(`
plugin "slow" {
  path   = "`+srv.URL+`/slow.wasm"
  sha256 = "`+hex.EncodeToString(sum[:])+`"
}
route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain { plugin = plugin.slow }
}
`), 0o644) != nil {
				t.Fatal("writing the files")
			}
			p := &proc{cmd: exec.Command(tunnelBin, "--config", path), stdout: newOutput(), stderr: newOutput(), exited: make(chan struct{})}
			p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
			p.cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+ca, "TUNNEL_CACHE_DIR="+filepath.Join(dir, "cache"))
			p.start(t)
			select {
			case <-asked:
			case <-p.exited:
				t.Fatalf("the tunnel ended before fetching its plugin; stderr:\n%s", p.stderr)
			}
			p.cmd.Process.Signal(sig)
			if !p.exitedWithin(cliTimeout) {
				t.Fatalf("still running %v after %v while it loads its configuration; stderr:\n%s", cliTimeout, sig, p.stderr)
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
			}
			if want := "tunnel: stop signal while starting (loading the configuration and its plugins): exiting without serving"; !strings.Contains(p.stderr.String(), want) {
				t.Errorf("stderr does not say %q:\n%s", want, p.stderr)
			}
		})
	}
}
