// Package router tests the demo configuration tunnel.hcl: SSH, HTTP and
// TLS on one port through the built-in router plugin, with real clients.
package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/config"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// timeout bounds every client run and every wait.
const timeout = 60 * time.Second

// lookTool finds a client program, or skips the test when it is not
// installed (fails under CI, where .ci/run installs it).
func lookTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing under CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return bin
}

// run runs a client program with stdin closed and returns its output and
// exit status.
func run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lookTool(t, name), args...)
	cmd.Stdin = strings.NewReader("")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user ssh config or known_hosts
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not finish within %v: %v\n%s", name, args, timeout, err, out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// recorder is a server that keeps what each connection sent first.
type recorder struct {
	ln    net.Listener
	mu    sync.Mutex
	first []string
	got   chan struct{}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// sshServer sends an SSH banner and records the client's.
func sshServer(t *testing.T) *recorder {
	r := &recorder{ln: listen(t), got: make(chan struct{}, 16)}
	go func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(timeout))
				io.WriteString(c, "SSH-2.0-recorder_1.0\r\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				r.mu.Lock()
				r.first = append(r.first, line)
				r.mu.Unlock()
				r.got <- struct{}{}
			}()
		}
	}()
	return r
}

// wait returns the first bytes of the next connection.
func (r *recorder) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-r.got:
	case <-time.After(timeout):
		t.Fatalf("no connection reached %s within %v", r.ln.Addr(), timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first[len(r.first)-1]
}

// tlsServer is a Go TLS server that records the SNI of each handshake and
// answers "hello from NAME over TLS" to a line.
func tlsServer(t *testing.T, name string, cert tls.Certificate) *recorder {
	r := &recorder{ln: listen(t), got: make(chan struct{}, 16)}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			r.mu.Lock()
			r.first = append(r.first, hello.ServerName)
			r.mu.Unlock()
			r.got <- struct{}{}
			return nil, nil
		},
	}
	go func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				defer tc.Close()
				tc.SetDeadline(time.Now().Add(timeout))
				if _, err := bufio.NewReader(tc).ReadString('\n'); err == nil {
					io.WriteString(tc, "hello from "+name+" over TLS\n")
				}
			}()
		}
	}()
	return r
}

// selfSigned makes a certificate for *.example.test and other.test.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "router test"},
		DNSNames:     []string{"*.example.test", "other.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestDemo runs tunnel.hcl with its targets on local servers and talks to
// its one port with ssh, curl, openssl s_client and a Go TLS client.
func TestDemo(t *testing.T) {
	cert, pool := selfSigned(t)
	sshd := sshServer(t)
	apps := tlsServer(t, "apps", cert)
	other := tlsServer(t, "other", cert)
	web := listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from http, Host %s\n", r.Host)
	}), ReadHeaderTimeout: timeout}
	go srv.Serve(web)
	t.Cleanup(func() { srv.Close() })

	env := map[string]string{
		"ROUTER_SSH":      sshd.ln.Addr().String(),
		"ROUTER_HTTP":     web.Addr().String(),
		"ROUTER_TLS_APPS": apps.ln.Addr().String(),
		"ROUTER_TLS":      other.ln.Addr().String(),
	}
	// tunnel.hcl's built-in router, compiled outside the race detector
	// (about 10 times faster) into the cache the Runner reads.
	router, err := builtin.Wasm("router")
	if err != nil {
		t.Fatal(err)
	}
	plugintest.Precompile(router)
	r := &config.Runner{
		Path: "tunnel.hcl",
		Options: config.Options{LookupEnv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		}},
		Stdout:  io.Discard,
		Logger:  slog.New(slog.DiscardHandler),
		Runtime: plugin.RuntimeOptions{CacheDir: plugintest.CacheDir()},
		Edit:    func(f *config.File) { f.Route("front").Listen = "127.0.0.1:0" },
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	addr := r.Addr("front").String()
	host, port, _ := net.SplitHostPort(addr)

	t.Run("ssh", func(t *testing.T) {
		// The recorder is no SSH server: the client gives up after the
		// banners (exit 255); what matters is whose banner reached it.
		out, code := run(t, "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=30", "-p", port, "test@"+host, "true")
		if banner := sshd.wait(t); !strings.HasPrefix(banner, "SSH-2.0-OpenSSH_") {
			t.Fatalf("the SSH server got %q (ssh exit %d: %s)", banner, code, out)
		}
		if code != 255 {
			t.Errorf("ssh exit %d, want 255 (the recorder does not speak SSH): %s", code, out)
		}
	})
	t.Run("curl", func(t *testing.T) {
		out, code := run(t, "curl", "-sS", "--max-time", "30", "--resolve", "www.example.test:"+port+":"+host,
			"http://www.example.test:"+port+"/")
		if code != 0 || out != "hello from http, Host www.example.test:"+port+"\n" {
			t.Fatalf("curl: exit %d, %q", code, out)
		}
	})
	t.Run("openssl s_client, by SNI", func(t *testing.T) {
		for _, tc := range []struct {
			sni string
			srv *recorder
		}{{"app.example.test", apps}, {"other.test", other}} {
			out, code := run(t, "openssl", "s_client", "-connect", addr, "-servername", tc.sni)
			if got := tc.srv.wait(t); got != tc.sni {
				t.Fatalf("%s: the TLS server got SNI %q", tc.sni, got)
			}
			if code != 0 || !strings.Contains(out, "subject=CN = router test") {
				t.Fatalf("%s: openssl s_client exit %d:\n%s", tc.sni, code, out)
			}
		}
	})
	t.Run("Go TLS client, post-quantum key share", func(t *testing.T) {
		d := &net.Dialer{Timeout: timeout}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "pq.example.test", RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if got := apps.wait(t); got != "pq.example.test" {
			t.Fatalf("the TLS server got SNI %q", got)
		}
		if cs := c.ConnectionState(); cs.CurveID != tls.X25519MLKEM768 {
			t.Errorf("key exchange %v, want X25519MLKEM768", cs.CurveID)
		}
		io.WriteString(c, "hi\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); line != "hello from apps over TLS\n" {
			t.Fatalf("got %q, %v", line, err)
		}
	})
}
