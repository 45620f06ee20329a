package config

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// TestCaptureTLSKeyLog: a route that terminates TLS with a capture block.
// With key_log in its tls block, the capture's client leg is the TLS as it
// crossed the wire with the secrets embedded, so tshark shows the request
// and the response decrypted on interface 0 with no key log file given,
// and the plaintext on interface 1; the key_log file gets the secrets too.
// Without key_log nothing changes: the client leg is the plaintext.
func TestCaptureTLSKeyLog(t *testing.T) {
	t.Parallel()
	tshark.Path(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the answer is 42 for "+r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, keyLog := range []bool{true, false} {
		t.Run(fmt.Sprintf("key_log=%v", keyLog), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ca, _ := tlsFiles(t, dir)
			kl := ""
			if keyLog {
				kl = `key_log = "keys.log"`
			}
			h := startIn(t, dir, fmt.Sprintf(`
route "r" {
  listen = "127.0.0.1:0"
  target = %q
  tls {
    cert = "cert.pem"
    key  = "key.pem"
    %s
  }
  capture {
    path = "c.pcapng"
  }
}
`, ln.Addr().String(), kl))
			addr := h.addr()
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}}
			resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/secret-path")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(body) != "the answer is 42 for /secret-path" {
				t.Fatalf("response %q, %v", body, err)
			}
			tr.CloseIdleConnections()
			h.stop() // closes the capture

			file := filepath.Join(dir, "c.pcapng")
			_, lport, _ := net.SplitHostPort(addr)
			f := tshark.OpenWith(t, file, tshark.Options{
				Args:   []string{"-d", "tcp.port==" + lport + ",tls"},
				Fields: []string{"tcp.payload", "http", "http.request.uri", "http.file_data"},
			})
			wire := f.Fields(func(p tshark.Packet) bool {
				return p.Is("frame.interface_id", "0") && bytes.Contains(p.Payload(), []byte("secret-path"))
			}, "frame.number")
			var out string
			for _, l := range f.Fields(func(p tshark.Packet) bool { return p.Has("http") }, "frame.interface_id", "http.request.uri", "http.file_data") {
				out += l + "\n"
			}
			for _, want := range []string{
				"0\t/secret-path\t", "0\t\tthe answer is 42 for /secret-path",
				"1\t/secret-path\t", "1\t\tthe answer is 42 for /secret-path",
			} {
				if !strings.Contains("\n"+out, "\n"+want+"\n") {
					t.Errorf("tshark does not show %q; it shows:\n%s", want, out)
				}
			}
			tls0 := f.Fields(func(p tshark.Packet) bool { return p.Is("frame.interface_id", "0") && p.Is("tls.handshake.type", "1") }, "frame.number")
			if keyLog {
				if len(wire) != 0 {
					t.Errorf("client leg packets %v hold the plaintext request", wire)
				}
				if len(tls0) != 1 {
					t.Errorf("client leg ClientHellos %v, want one", tls0)
				}
				keys, err := os.ReadFile(filepath.Join(dir, "keys.log"))
				if err != nil || !bytes.Contains(keys, []byte("CLIENT_TRAFFIC_SECRET_0 ")) {
					t.Errorf("keys.log: %q, %v", keys, err)
				}
			} else if len(wire) != 2 || len(tls0) != 0 { // the request and the response
				t.Errorf("without key_log the client leg is not the plaintext: %v packets with the request, %v hellos", wire, tls0)
			}
			f.CheckClean()
		})
	}
}
