package capture_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// lastWord forwards what the client sends unchanged and, after a chunk
// holding "bye", sends "!" and ends the stream toward the target, in the
// same call.
var lastWord = dataLink("last-word", func(dir host.Direction, b []byte, s *host.Stream) error {
	if err := s.Forward(dir, b); err != nil {
		return err
	}
	if dir == host.ClientToServer && bytes.Contains(b, []byte("bye")) {
		if err := s.Send(dir, []byte("!")); err != nil {
			return err
		}
		return s.CloseWrite(dir)
	}
	return nil
})

// TestUnchangedChunkThenMore: a chunk the chain forwards unchanged is one
// record for both legs; bytes and a FIN the chain sends toward the target
// in the same call still follow the chunk on the target leg, and both legs
// follow with the bytes each side sent.
func TestUnchangedChunkThenMore(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, lastWord)
	c := testnet.Dial(t, s.addr)
	for _, tc := range []struct{ line, echo string }{{"hello\n", "hello\n"}, {"bye\n", "bye\n!"}} {
		if _, err := c.Write([]byte(tc.line)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(tc.echo))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != tc.echo {
			t.Fatalf("echo of %q: %q, %v; want %q", tc.line, buf, err, tc.echo)
		}
	}
	// The target got the FIN with "bye": it ends its side, so the client
	// reads EOF without closing its own.
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after bye: %q, %v; want EOF", rest, err)
	}
	c.Close()
	s.finish(t)

	client := c.LocalAddr().String()
	sent, echoed := []byte("hello\nbye\n"), []byte("hello\nbye\n!")
	f := tshark.Open(t, s.file)
	wantStream(t, f.Follow(client, c.RemoteAddr().String()), client, c.RemoteAddr().String(), sent, echoed)
	wantStream(t, f.Follow(client, srv.Addr()), client, srv.Addr(), echoed, echoed)
	// The client side of the target leg: the two chunks, the "!", then
	// the FIN, in this order.
	_, port, _ := strings.Cut(client, ":")
	got := f.Fields(func(p tshark.Packet) bool {
		return p.Is("frame.interface_id", "1") && p.Is("tcp.srcport", port) && (p.Int("tcp.len") > 0 || p.Is("tcp.flags.fin", "1"))
	}, "tcp.len", "tcp.flags.fin")
	if strings.Join(got, " ") != "6\t0 4\t0 1\t0 0\t1" {
		t.Errorf("target leg, client side: %q; want the 6 and 4 byte chunks, the 1 byte one, then the FIN", got)
	}
	f.CheckClean()
}
