package capture_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// redisServer starts redis-server on a free loopback port, or skips the
// test when it is not installed (fails under CI, where .ci/run installs it).
func redisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is missing under CI: %v", err)
		}
		t.Skip("redis-server not installed:", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out := testnet.NewLogs()
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out.Wait(t, "Ready to accept connections")
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestRedisDissected: Wireshark's RESP dissector decodes the commands and
// replies on both legs of a captured Redis session.
func TestRedisDissected(t *testing.T) {
	t.Parallel()
	redis := redisServer(t)
	s := start(t, "127.0.0.1:0", redis, capture.Options{})
	c := testnet.Dial(t, s.addr)
	for _, cmd := range []struct{ req, reply string }{
		{"*3\r\n$3\r\nSET\r\n$5\r\nfruit\r\n$5\r\napple\r\n", "+OK\r\n"},
		{"*2\r\n$3\r\nGET\r\n$5\r\nfruit\r\n", "$5\r\napple\r\n"},
	} {
		if _, err := io.WriteString(c, cmd.req); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(cmd.reply))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != cmd.reply {
			t.Fatalf("%q: got %q, %v", cmd.req, got, err)
		}
	}
	c.Close()
	s.finish(t)
	_, lport, _ := net.SplitHostPort(s.addr)
	_, rport, _ := net.SplitHostPort(redis)
	// Each leg's port decodes as RESP: the tunnel's on the client leg, the
	// target's on the target leg.
	f := tshark.OpenWith(t, s.file, tshark.Options{
		Args:   []string{"-d", "tcp.port==" + lport + ",resp", "-d", "tcp.port==" + rport + ",resp"},
		Fields: []string{"resp", "resp.bulk_string.value", "resp.string"},
	})
	for leg := range 2 {
		var got string
		for _, l := range f.Fields(func(p tshark.Packet) bool { return p.Has("resp") && tshark.Interface(leg)(p) }, "resp.bulk_string.value", "resp.string") {
			got += l + "\n"
		}
		want := "534554,6672756974,6170706c65\t\n\tOK\n474554,6672756974\t\n6170706c65\t\n"
		if got != want {
			t.Errorf("leg %d: RESP fields %q, want %q", leg, got, want)
		}
	}
}
