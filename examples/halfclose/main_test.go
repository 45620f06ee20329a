package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/examples/internal/extest"
	"github.com/tunnelwasm/tunnel/examples/internal/serve"
	"github.com/tunnelwasm/tunnel/host"
)

// TestMain fails the package if a goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHalfCloseBehindTunnel runs the server and the client as the README
// does, through a tunnel: once on the kernel's splice path (no hook) and
// once on the filtered path (a hook that forwards every chunk unchanged).
func TestHalfCloseBehindTunnel(t *testing.T) {
	identity := host.ChunkFunc(func(_ *host.ConnInfo, _ host.Direction, b []byte) ([]byte, error) { return b, nil })
	for _, tc := range []struct {
		name  string
		chain []host.Link
	}{{"splice", nil}, {"filtered", []host.Link{{Name: "identity", Hook: identity}}}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, serverOut := extest.Start(t, run, "-mode", "server", "-listen", "127.0.0.1:0")
			tunnel := extest.Tunnel(t, addr, tc.chain...)

			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"-mode", "client", "-addr", tunnel}, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("client exit status %d; stdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
			}
			want := "sent 23000 bytes, then half-closed; received 46000 bytes (want 46000), sha256 " + sum(Payload(ServerPhrase, 46000)) + "\n" +
				"OK: the server saw the end of the request and the whole answer came back\n"
			if stdout.String() != want {
				t.Errorf("client stdout:\n%s\nwant:\n%s", &stdout, want)
			}
			serverOut.Wait(t, `end of stream after 23000 bytes; answering 46000 bytes`)
		})
	}
}

// TestClientNoticesShortAnswer: the client checks the answer, so a server
// that answers wrongly makes it exit 1.
func TestClientNoticesShortAnswer(t *testing.T) {
	addr, _ := extest.Start(t, runEcho)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-mode", "client", "-addr", addr, "-n", "100"}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit status %d against an echo server, want 1", code)
	}
	if !strings.Contains(stdout.String(), "received 100 bytes (want 200)") ||
		!strings.Contains(stderr.String(), "the answer is not the expected 2N bytes") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	}
}

// runEcho is a stand-in server that echoes instead of doubling.
func runEcho(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
	ln, code := serve.Listen("echo", "127.0.0.1:0", stdout, stderr)
	if ln == nil {
		return code
	}
	serve.Conns(ctx, ln, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	return 0
}

func sum(r io.Reader) string {
	h := sha256.New()
	io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil))
}

// TestPayload: the phrase repeats across reads of any size and is cut at n.
func TestPayload(t *testing.T) {
	var b bytes.Buffer
	r, buf := Payload(ClientPhrase, 50), make([]byte, 7)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err == io.EOF {
			break
		}
	}
	if want := strings.Repeat(ClientPhrase, 3)[:50]; b.String() != want {
		t.Errorf("got %q, want %q", &b, want)
	}
}

func TestBadMode(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-mode", "proxy"}, io.Discard, &stderr); code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `-mode "proxy": want server or client`) {
		t.Errorf("stderr: %s", &stderr)
	}
}
