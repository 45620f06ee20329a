//go:build linux

package evloop

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stuckTarget returns a loopback address whose listener's backlog is full:
// a connect to it stays in progress (the SYN is dropped and retried).
func stuckTarget(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	for i := 0; ; i++ { // a backlog of 0 holds one connection: fill it
		c, err := net.DialTimeout("tcp", ap.String(), 300*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i > 8 {
			t.Skip("the kernel accepts every connect into a backlog of 0")
		}
	}
	return ap
}

// TestReviewAbortWhileDialling: Output.Abort during the dial ends the
// connection as Aborted (as Loop.Abort does), not as a failed dial.
func TestReviewAbortWhileDialling(t *testing.T) {
	checkFDs(t)
	outs := make(chan *Output, 1)
	a, addr := startChained(t, stuckTarget(t), func() Chain {
		return &funcChain{open: func(o *Output) error { outs <- o; return nil }}
	})
	c := dial(t, addr)
	defer c.Close()
	cause := errors.New("test abort")
	(<-outs).Abort(cause)
	if s := a.waitDone(t); s.Reason != Aborted || s.Err != cause {
		t.Errorf("Done: %v, %v; want Aborted with the abort's cause", s.Reason, s.Err)
	}
}

// TestReviewOpenFails: a Chain whose Open fails ends the connection as
// Failed with Open's error; nothing was dialled, so not DialFailed.
func TestReviewOpenFails(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	refused := errors.New("refused")
	a, addr := startChained(t, target, func() Chain {
		return &funcChain{open: func(*Output) error { return refused }}
	})
	// The reset may come before connect returns: either is fine here.
	if c, err := net.DialTimeout("tcp", addr, testWait); err == nil {
		defer c.Close()
	}
	if s := a.waitDone(t); s.Reason != Failed || s.Err != refused || s.Connected {
		t.Errorf("Done: %v, %v, connected %v; want Failed with Open's error", s.Reason, s.Err, s.Connected)
	}
}
