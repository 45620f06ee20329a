package capture_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testcert"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// TestKeyLogDecrypts: an HTTPS exchange between a Go client and a Go
// server through a capturing route, the client's key log going into the
// capture (KeyLogWriter): the file holds only ciphertext, yet tshark,
// reading the Decryption Secrets Block, shows the HTTP request and the
// response body in plaintext on both legs. TLS 1.3 and TLS 1.2 (whose key
// log lines differ: traffic secrets vs CLIENT_RANDOM).
func TestKeyLogDecrypts(t *testing.T) {
	t.Parallel()
	tshark.Path(t)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			ca := testcert.NewCA(t, "keylog CA")
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{ca.Server(t).TLS},
				MaxVersion:   v,
				NextProtos:   []string{"http/1.1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "the answer is 42 for "+r.URL.Path)
			})}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			s := start(t, "127.0.0.1:0", ln.Addr().String(), capture.Options{})
			httpsGet(t, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", KeyLogWriter: capture.KeyLogWriter(s.w)},
				"https://"+s.addr+"/secret-path", "the answer is 42 for /secret-path")
			s.finish(t)

			raw, err := os.ReadFile(s.file)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte("secret-path")) || bytes.Contains(raw, []byte("the answer")) {
				t.Fatal("the capture holds the plaintext: the test proves nothing")
			}
			_, lport, _ := net.SplitHostPort(s.addr)
			_, tport, _ := net.SplitHostPort(ln.Addr().String())
			decode := []string{"-d", "tcp.port==" + lport + ",tls", "-d", "tcp.port==" + tport + ",tls"}
			// Two passes (-2) as Wireshark's GUI does: the keys of the
			// handshake come after the ServerHello that needs them.
			out := tshark.Run(t, s.file, append(decode, "-2", "-Y", "http", "-T", "fields",
				"-e", "frame.interface_id", "-e", "http.request.uri", "-e", "http.file_data")...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			want := []string{
				"0\t/secret-path\t", "0\t\tthe answer is 42 for /secret-path",
				"1\t/secret-path\t", "1\t\tthe answer is 42 for /secret-path",
			}
			for _, w := range want {
				found := false
				for _, l := range lines {
					found = found || l == w
				}
				if !found {
					t.Errorf("tshark does not show %q; it shows:\n%s", w, out)
				}
			}
			// One pass, as tshark reads by default: the application data
			// follows the secrets block, so it decrypts too.
			f := tshark.OpenWith(t, s.file, tshark.Options{Args: decode, Fields: []string{"http.request", "http.request.uri"}})
			one := f.Fields(func(p tshark.Packet) bool { return p.Has("http.request") }, "http.request.uri")
			if strings.Count(strings.Join(one, "\n"), "/secret-path") != 2 {
				t.Errorf("one pass: %q, want the request on both legs", one)
			}
			f.CheckClean()
		})
	}
}

// TestKeyLogHold: a leg that opens with a ClientHello is held until its
// keys are written, then written at once (the wait is an hour here); and
// not forever: without them, what follows the hello reaches the file (no
// Sync, no Close) once KeyLogWait is over.
func TestKeyLogHold(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	for i, c := range []struct {
		name string
		wait time.Duration
		keys bool
	}{{"keys", time.Hour, true}, {"timeout", 50 * time.Millisecond, false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{KeyLogWait: c.wait})
			capture.KeyLogWriter(s.w) // a key log is expected
			random := bytes.Repeat([]byte{byte(i + 1)}, 32)
			// A handshake record holding the start of a ClientHello.
			hello := append([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03}, random...)
			hello = append(hello, make([]byte, 69-len(hello))...)
			conn := testnet.Dial(t, s.addr)
			marker := []byte("MARKER-AFTER-THE-HELLO-" + c.name)
			for _, b := range [][]byte{hello, marker} {
				conn.Write(b)
				if _, err := io.ReadFull(conn, make([]byte, len(b))); err != nil {
					t.Fatal(err)
				}
			}
			if c.keys {
				s.w.AddKeyLog([]byte(fmt.Sprintf("CLIENT_RANDOM %x %x", random, bytes.Repeat([]byte{9}, 48))))
			}
			deadline := time.Now().Add(time.Minute)
			for {
				raw, _ := os.ReadFile(s.file)
				if bytes.Count(raw, marker) == 4 { // both legs, both ways
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the bytes after the hello are not in the file after a minute (%d copies)", bytes.Count(raw, marker))
				}
				time.Sleep(20 * time.Millisecond)
			}
			conn.Close()
			s.finish(t)
		})
	}
}
