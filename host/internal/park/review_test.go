//go:build linux

package park

import (
	"net"
	"syscall"
	"testing"
)

// fdOf returns the descriptor number of c's socket.
func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	var n int
	if err := rawConn(t, c).Control(func(fd uintptr) { n = int(fd) }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReviewClosedSocketsNumberReused: a socket closed while parked, whose
// descriptor number a new socket then gets, is never confused with it: the
// new socket parks (no EEXIST from a stale registration), the old wait's
// Unpark does not take the new socket out of the set, and bytes on the new
// socket run the new fn only.
func TestReviewClosedSocketsNumberReused(t *testing.T) {
	p := newParker(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var reused, peer *net.TCPConn
	var oldTicket Ticket
	// The lowest free number is reused at once; another goroutine of the
	// test binary may take it first, so try a few times.
	for try := 0; try < 10 && reused == nil; try++ {
		_, old := pair(t)
		n := fdOf(t, old)
		tk, err := p.Park(rawConn(t, old), func() { t.Error("fn of a closed socket ran") })
		if err != nil {
			t.Fatal(err)
		}
		old.Close() // by its owner, without Unpark first
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		switch {
		case fdOf(t, c.(*net.TCPConn)) == n:
			reused, peer, oldTicket = c.(*net.TCPConn), s.(*net.TCPConn), tk
		case fdOf(t, s.(*net.TCPConn)) == n:
			reused, peer, oldTicket = s.(*net.TCPConn), c.(*net.TCPConn), tk
		default:
			if !p.Unpark(tk) {
				t.Fatal("Unpark of a closed socket's wait reported false")
			}
		}
	}
	if reused == nil {
		t.Fatal("no new socket got a closed socket's descriptor number in 10 tries")
	}
	woke := make(chan struct{})
	if _, err := p.Park(rawConn(t, reused), func() { close(woke) }); err != nil {
		t.Fatalf("park of a socket on a reused descriptor number: %v", err)
	}
	if !p.Unpark(oldTicket) {
		t.Fatal("Unpark of the closed socket's wait reported false")
	}
	peer.Write([]byte("x"))
	fired(t, woke, "bytes on the socket with the reused number")
	if n := p.Len(); n != 0 {
		t.Fatalf("Len = %d after every wait ended, want 0", n)
	}
}
