package capture_test

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testcert"
	"github.com/tunnelwasm/tunnel/internal/testkit"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// rename is a plugin stand-in that changes the request path on its way to
// the target (same length), so that the target leg differs from the
// client's and carries a verdict.
var rename = host.Link{Name: "rename", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
	if dir == host.ClientToServer {
		return bytes.ReplaceAll(b, []byte("/secret-path"), []byte("/SECRET-PATH")), nil
	}
	return b, nil
})}

// TestWireTapDecrypts: a route that terminates TLS, with the capture's
// WireTap and the route's key log going into the capture. A Go HTTPS
// client talks to a plain HTTP target through the real Proxy. The client
// leg (interface 0) holds only the TLS records as they crossed the wire,
// yet tshark, in one pass and with no key log file, decrypts the request
// and the response there; the target leg (interface 1) is the plaintext
// after the plugin, with the verdict on its packet. TLS 1.3 and 1.2.
func TestWireTapDecrypts(t *testing.T) {
	t.Parallel()
	tshark.Path(t)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "the answer is 42 for "+r.URL.Path)
			})}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			file := filepath.Join(t.TempDir(), "c.pcapng")
			w, err := capture.Create(capture.Options{Path: file})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			keyFile := &testkit.Buffer{} // stands for the key_log file
			ca := testcert.NewCA(t, "wiretap CA")
			first, last := capture.Links(w)
			p, _ := testnet.Proxy(t, host.Route{
				Name: "r", Listen: "127.0.0.1:0", Target: ln.Addr().String(),
				Chain: []host.Link{first, rename, last},
				TLS: &tls.Config{
					Certificates: []tls.Certificate{ca.Server(t).TLS},
					MaxVersion:   v,
					NextProtos:   []string{"http/1.1"},
					KeyLogWriter: io.MultiWriter(keyFile, capture.KeyLogWriter(w)),
				},
				WireTap: capture.WireTap(w),
			})
			addr := p.Addr("r").String()
			httpsGet(t, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}, "https://"+addr+"/secret-path", "the answer is 42 for /SECRET-PATH")
			if err := p.Shutdown(testnet.Context(t)); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}

			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte("/SECRET-PATH")) {
				t.Fatal("the target leg's plaintext is not in the file")
			}
			if bytes.Contains(raw, []byte("/secret-path")) {
				t.Fatal("the client's plaintext request is in the file: the client leg is not the wire")
			}
			if strings.Count(keyFile.String(), "\n") == 0 {
				t.Fatal("the key log file got no lines")
			}
			// One pass (tshark's default), no key log file: the secrets
			// block decrypts.
			_, lport, _ := net.SplitHostPort(addr)
			f := tshark.OpenWith(t, file, tshark.Options{
				Args:   []string{"-d", "tcp.port==" + lport + ",tls"},
				Fields: []string{"tcp.payload", "http", "http.request.uri", "http.file_data"},
			})
			// No packet of the client leg holds plaintext of either way.
			if got := f.Fields(func(p tshark.Packet) bool {
				b := p.Payload()
				return p.Is("frame.interface_id", "0") && (bytes.Contains(b, []byte("SECRET")) || bytes.Contains(b, []byte("the answer")))
			}, "frame.number"); len(got) != 0 {
				t.Fatalf("client leg packets %v hold plaintext", got)
			}
			lines := f.Fields(func(p tshark.Packet) bool { return p.Has("http") }, "frame.interface_id", "http.request.uri", "http.file_data")
			out := strings.Join(lines, "\n")
			for _, want := range []string{
				"0\t/secret-path\t", "0\t\tthe answer is 42 for /SECRET-PATH",
				"1\t/SECRET-PATH\t", "1\t\tthe answer is 42 for /SECRET-PATH",
			} {
				found := false
				for _, l := range lines {
					found = found || l == want
				}
				if !found {
					t.Errorf("tshark does not show %q; it shows:\n%s", want, out)
				}
			}
			// Interface 0 is TLS on the wire.
			if got := f.Fields(func(p tshark.Packet) bool { return p.Is("frame.interface_id", "0") && p.Is("tls.handshake.type", "1") }, "frame.number"); len(got) != 1 {
				t.Errorf("client leg ClientHellos: %v, want one", got)
			}
			// The verdict on the client's chunk is on the target leg.
			comments := f.Fields(func(p tshark.Packet) bool { return p.Has("frame.comment") }, "frame.interface_id", "frame.comment")
			found := false
			for _, c := range comments {
				found = found || strings.HasPrefix(c, "1\tclient chunk (plaintext): chain: replaced")
			}
			if !found {
				t.Errorf("no target leg packet carries the replaced verdict; comments:\n%s", strings.Join(comments, "\n"))
			}
			f.CheckClean()
		})
	}
}

// tlsSetup is a capturing route that terminates TLS with the wire tapped
// and the server's key log in the capture, in front of an echo server.
type tlsSetup struct {
	*setup
	ca *testcert.CA
}

func startTLS(t *testing.T, chain ...host.Link) *tlsSetup {
	t.Helper()
	srv := testnet.Serve(t, testnet.Echo)
	file := filepath.Join(t.TempDir(), "c.pcapng")
	w, err := capture.Create(capture.Options{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	ca := testcert.NewCA(t, "wiretap CA")
	first, last := capture.Links(w)
	p, logs := testnet.Proxy(t, host.Route{
		Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr(),
		Chain:   append(append([]host.Link{first}, chain...), last),
		TLS:     &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS}, KeyLogWriter: capture.KeyLogWriter(w)},
		WireTap: capture.WireTap(w),
	})
	return &tlsSetup{setup: &setup{p: p, addr: p.Addr("r").String(), logs: logs, w: w, file: file}, ca: ca}
}

// TestWireTapVerdicts: on a tapped connection the verdicts on the
// client's chunks go on the target leg: a dropped chunk (answered by the
// filter) on the target leg's next packet, with the verdict of the chunk
// that made it; the client leg, decrypted, still shows every byte the
// client sent and received, replies included.
func TestWireTapVerdicts(t *testing.T) {
	t.Parallel()
	tshark.Path(t)
	s := startTLS(t, deny)
	c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(out, want string) {
		t.Helper()
		if _, err := c.Write([]byte(out)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			t.Fatalf("sent %q, got %q (%v), want %q", out, got, err, want)
		}
	}
	exchange("FLUSHALL\r\n", "-ERR no\r\n")
	exchange("shout\n", "SHOUT!\n")
	exchange("hello\n", "hello\n")
	c.Close()
	s.finish(t)

	f := tshark.Open(t, s.file, "tcp.payload")
	comments := f.Fields(func(p tshark.Packet) bool { return p.Has("frame.comment") && p.Int("tcp.len") > 0 }, "frame.interface_id", "tcp.payload", "frame.comment")
	want := "1\t" + hexOf("SHOUT!\n") + "\tclient chunk (plaintext): chain: dropped or held (none of the 10 bytes reached the target); replied 9 bytes to the client; then client chunk (plaintext): chain: replaced (6 bytes in, 7 bytes reached the target)"
	if strings.Join(comments, "\n") != want {
		t.Errorf("data packets with comments:\n%s\nwant:\n%s", strings.Join(comments, "\n"), want)
	}
	_, lport, _ := net.SplitHostPort(s.addr)
	decrypted := tshark.Run(t, s.file, "-d", "tcp.port=="+lport+",tls", "-q", "-z", "follow,tls,raw,0")
	st, err := tshark.ParseFollow(decrypted)
	if err != nil {
		t.Fatalf("follow tls: %v\n%s", err, decrypted)
	}
	client, server := st.Data[0], st.Data[1]
	if st.Nodes[0] == s.addr { // node 0 sent first: the tunnel's session ticket
		client, server = server, client
	}
	if string(client) != "FLUSHALL\r\nshout\nhello\n" || string(server) != "-ERR no\r\nSHOUT!\nhello\n" {
		t.Errorf("decrypted client leg: %q / %q", client, server)
	}
	f.CheckClean()
}

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

// TestWireTapFailedHandshake: a client that does not trust the tunnel's
// certificate gives up during the handshake; the chain never opens, and
// the wire leg (the hello, the tunnel's flight, the client's alert) still
// ends, with a RST naming why, once the connection is gone.
func TestWireTapFailedHandshake(t *testing.T) {
	t.Parallel()
	tshark.Path(t)
	s := startTLS(t)
	if _, err := tls.Dial("tcp", s.addr, &tls.Config{ServerName: "localhost"}); err == nil {
		t.Fatal("a client without the CA completed the handshake")
	}
	deadline := time.Now().Add(time.Minute)
	for capture.PendingTaps(s.w) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the failed connection's wire leg is still pending after a minute")
		}
		runtime.GC() // the leg ends when its wrapper is collected
		time.Sleep(10 * time.Millisecond)
	}
	s.finish(t)
	f := tshark.Open(t, s.file)
	rst := f.Fields(func(p tshark.Packet) bool { return p.Is("tcp.flags.reset", "1") }, "frame.interface_id", "frame.comment")
	want := "0\tconnection ended before its plaintext reached the chain (TLS handshake failed or aborted)"
	if strings.Join(rst, "\n") != want {
		t.Errorf("RST packets:\n%s\nwant %q", strings.Join(rst, "\n"), want)
	}
	hellos := f.Fields(func(p tshark.Packet) bool { return p.Is("tls.handshake.type", "1") || p.Is("tls.handshake.type", "2") }, "frame.interface_id", "tls.handshake.type")
	// The ServerHello's record may come with the (decrypted) messages after it.
	if len(hellos) != 2 || hellos[0] != "0\t1" || !strings.HasPrefix(hellos[1], "0\t2") {
		t.Errorf("handshake messages %q, want the ClientHello and the ServerHello on interface 0", hellos)
	}
	if n := len(f.Fields(tshark.Interface(1), "frame.number")); n != 0 {
		t.Errorf("%d target leg packets for a connection that never reached the chain", n)
	}
	f.CheckClean()
}

// httpsGet GETs url with a client of cfg, checks the body is want, and
// closes the connection.
func httpsGet(t *testing.T, cfg *tls.Config, url, want string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != want {
		t.Fatalf("GET %s: %q, %v; want %q", url, body, err, want)
	}
}

// TestWireTapOrderlyEnd: a client that ends its session in order
// (close_notify, then its FIN) leaves a client leg that ends with a FIN
// each way. After close_notify crypto/tls reads no more of the socket, so
// the leg never saw that FIN and ended with a RST nobody sent.
func TestWireTapOrderlyEnd(t *testing.T) {
	t.Parallel()
	tshark.Path(t)
	s := startTLS(t)
	c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if got := make([]byte, 5); func() error { _, err := io.ReadFull(c, got); return err }() != nil || string(got) != "ping\n" {
		t.Fatalf("echo: %q", got)
	}
	if err := c.CloseWrite(); err != nil { // close_notify
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after close_notify: %q, %v; want the tunnel's orderly end", rest, err)
	}
	c.Close() // the client's FIN
	s.logs.Wait(t, "connection closed", "reason=client_eof")
	s.finish(t)
	f := tshark.Open(t, s.file)
	ends := f.Fields(func(p tshark.Packet) bool {
		return p.Is("frame.interface_id", "0") && (p.Is("tcp.flags.fin", "1") || p.Is("tcp.flags.reset", "1"))
	}, "tcp.srcport", "tcp.flags.fin", "tcp.flags.reset")
	_, lport, _ := net.SplitHostPort(s.addr)
	if len(ends) != 2 || strings.HasPrefix(ends[0], lport+"\t") || ends[0][strings.IndexByte(ends[0], '\t'):] != "\t1\t0" || ends[1] != lport+"\t1\t0" {
		t.Errorf("client leg ends with %q (source port, FIN, RST); want the client's FIN, then the tunnel's from port %s", ends, lport)
	}
	f.CheckClean()
}
