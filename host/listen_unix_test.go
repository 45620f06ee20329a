//go:build unix

package host

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestListenControlNoDelay: a route's listening socket has TCP_NODELAY
// from before it listens, so every socket it accepts inherits it, even
// one whose handshake completed before the event loop took the listener
// (the loop sets it on the listener too, but only from then on).
func TestListenControlNoDelay(t *testing.T) {
	t.Parallel()
	for _, reuse := range []bool{false, true} {
		lc := net.ListenConfig{Control: listenControl(reuse)}
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rc, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var nodelay, reuseport int
		rc.Control(func(fd uintptr) {
			nodelay, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY)
			reuseport, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT)
		})
		if nodelay != 1 || (reuseport == 1) != reuse {
			t.Errorf("reuse %v: TCP_NODELAY %d, SO_REUSEPORT %d", reuse, nodelay, reuseport)
		}
	}
}
