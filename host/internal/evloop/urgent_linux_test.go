//go:build linux

package evloop

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUrgentData: a client sends bytes, an urgent byte (MSG_OOB), more
// bytes and maybe its FIN, all queued before the loop reads the socket. A
// read stops short at the urgent mark with bytes behind it, and a splice
// returns 0 there: neither may be taken for "drained" or for the end of
// stream. Every in-band byte reaches the server (the urgent byte, out of
// band, is not forwarded), and a FIN ends it cleanly.
func TestUrgentData(t *testing.T) {
	t.Parallel()
	bulk := bytes.Repeat([]byte("a"), bufferSize) // fills a read: the direction splices
	for _, tc := range []struct {
		name   string
		splice bool
		chain  bool
		head   []byte
		fin    bool
	}{
		{name: "read, FIN", head: []byte("hello"), fin: true},
		{name: "read, no FIN", head: []byte("hello")},
		{name: "splice, FIN", splice: true, head: bulk, fin: true},
		{name: "splice, no FIN", splice: true, head: bulk},
		{name: "chain, FIN", chain: true, head: []byte("hello"), fin: true},
		{name: "chain, no FIN", chain: true, head: []byte("hello")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := append(bytes.Clone(tc.head), "world"...)
			got := make(chan []byte, 1)
			_, target := startServer(t, func(c *net.TCPConn) {
				if tc.fin {
					b, err := io.ReadAll(c)
					if err != nil {
						t.Errorf("server: %v", err)
					}
					got <- b
					return
				}
				b := make([]byte, len(want))
				c.SetReadDeadline(time.Now().Add(testWait))
				n, err := io.ReadFull(c, b)
				if err != nil {
					t.Errorf("server: %v after %d bytes", err, n)
				}
				got <- b[:n]
			})
			l, err := newLoop(nil, tc.splice)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			done := make(chan Stats, 1)
			var a Acceptor = &testAcceptor{target: target, dialTimeout: testWait, done: done}
			if tc.chain {
				a = &chainAcceptor{target: target, chain: func() Chain { return &funcChain{} }, done: done}
			}
			fd, addr := listenFD(t)
			c := dial(t, addr.String())
			// On loopback each send is in the peer's receive queue when it
			// returns: all of it waits there before the loop accepts.
			if _, err := c.Write(tc.head); err != nil {
				t.Fatal(err)
			}
			rc, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			rc.Control(func(s uintptr) {
				if err := unix.Send(int(s), []byte("X"), unix.MSG_OOB); err != nil {
					t.Error(err)
				}
			})
			if _, err := c.Write([]byte("world")); err != nil {
				t.Fatal(err)
			}
			if tc.fin {
				c.CloseWrite()
			}
			if _, err := l.AddListener(fd, a); err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
			if b := <-got; !bytes.Equal(b, want) {
				t.Errorf("server got %d bytes (%.20q…), want %d", len(b), b, len(want))
			}
			if !tc.fin {
				return
			}
			c.SetReadDeadline(time.Now().Add(testWait))
			if _, err := io.ReadAll(c); err != nil {
				t.Errorf("client: %v, want a clean end of stream", err)
			}
			select {
			case s := <-done:
				if s.Reason != Ended {
					t.Errorf("reason %v (err %v), want Ended", s.Reason, s.Err)
				}
			case <-time.After(testWait):
				t.Fatal("the connection did not end")
			}
		})
	}
}
