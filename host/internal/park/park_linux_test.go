//go:build linux

package park

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func rawConn(t *testing.T, c syscall.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func newParker(t *testing.T) *Parker {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// fired waits for ch with a generous bound (the machine may be busy).
func fired(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: fn did not run within 10s", what)
	}
}

// flush parks a fresh socket, sends it a byte and waits for its wake-up:
// the Parker has handled every readiness that came before.
func flush(t *testing.T, p *Parker) {
	t.Helper()
	c, d := pair(t)
	woke := make(chan struct{})
	if _, err := p.Park(rawConn(t, d), func() { close(woke) }); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("y"))
	fired(t, woke, "a socket parked after the others")
}

func TestParkWakesOnData(t *testing.T) {
	p := newParker(t)
	a, b := pair(t)
	woke := make(chan struct{})
	if _, err := p.Park(rawConn(t, b), func() { close(woke) }); err != nil {
		t.Fatal(err)
	}
	if n := p.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
	select {
	case <-woke:
		t.Fatal("woke before any byte was sent")
	default:
	}
	a.Write([]byte("x"))
	fired(t, woke, "data after park")
	if n := p.Len(); n != 0 {
		t.Fatalf("Len after wake = %d, want 0", n)
	}
	// The socket works as before: its byte is there to read.
	buf := make([]byte, 1)
	if _, err := io.ReadFull(b, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read after wake: %q %v", buf, err)
	}
	// Parked again (the socket is still in the set, disarmed), it wakes
	// again, and on a FIN too.
	woke2 := make(chan struct{})
	if _, err := p.Park(rawConn(t, b), func() { close(woke2) }); err != nil {
		t.Fatalf("second park: %v", err)
	}
	a.CloseWrite()
	fired(t, woke2, "FIN after the second park")
}

func TestParkWakesAtOnceWhenDataIsWaiting(t *testing.T) {
	p := newParker(t)
	a, b := pair(t)
	a.Write([]byte("early"))
	// Wait until the byte is in b's receive queue: a 1-byte peek.
	buf := make([]byte, 1)
	rc := rawConn(t, b)
	for {
		var n int
		rc.Read(func(fd uintptr) bool {
			n, _, _ = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return n > 0
		})
		if n > 0 {
			break
		}
	}
	woke := make(chan struct{})
	if _, err := p.Park(rc, func() { close(woke) }); err != nil {
		t.Fatal(err)
	}
	fired(t, woke, "data already waiting")
}

func TestUnparkBeforeWake(t *testing.T) {
	p := newParker(t)
	a, b := pair(t)
	ran := make(chan struct{}, 1)
	tk, err := p.Park(rawConn(t, b), func() { ran <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if !p.Unpark(tk) {
		t.Fatal("Unpark of a pending wait reported false")
	}
	if p.Unpark(tk) {
		t.Fatal("a second Unpark reported true")
	}
	a.Write([]byte("x"))
	// The Parker saw the first socket's readiness by then, had it still
	// been in the set.
	flush(t, p)
	select {
	case <-ran:
		t.Fatal("fn of an unparked wait ran")
	default:
	}
}

func TestUnparkAfterWake(t *testing.T) {
	p := newParker(t)
	a, b := pair(t)
	woke := make(chan struct{})
	tk, err := p.Park(rawConn(t, b), func() { close(woke) })
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("x"))
	fired(t, woke, "data")
	if p.Unpark(tk) {
		t.Fatal("Unpark after fn ran reported true")
	}
}

func TestParkedSocketClosed(t *testing.T) {
	p := newParker(t)
	_, b := pair(t)
	rc := rawConn(t, b)
	tk, err := p.Park(rc, func() { t.Error("fn ran for a socket closed by its owner") })
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if !p.Unpark(tk) {
		t.Fatal("Unpark of a closed socket's wait reported false")
	}
	if _, err := p.Park(rc, func() {}); err == nil {
		t.Fatal("Park of a closed socket succeeded")
	}
	if n := p.Len(); n != 0 {
		t.Fatalf("Len = %d after a refused park, want 0", n)
	}
}

func TestCloseDropsWaits(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	a, b := pair(t)
	if _, err := p.Park(rawConn(t, b), func() { t.Error("fn ran after Close") }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	fired(t, done, "Close")
	p.Close() // idempotent
	a.Write([]byte("x"))
	if _, err := p.Park(rawConn(t, b), func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Park after Close: %v, want ErrClosed", err)
	}
}

// TestManyParked parks many sockets and wakes them all: every fn runs once.
func TestManyParked(t *testing.T) {
	p := newParker(t)
	const n = 200
	counts := make(chan int, n)
	var writers []*net.TCPConn
	for i := range n {
		a, b := pair(t)
		writers = append(writers, a)
		if _, err := p.Park(rawConn(t, b), func() { counts <- i }); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range writers {
		a.Write([]byte("x"))
	}
	seen := make(map[int]bool)
	for range n {
		select {
		case i := <-counts:
			if seen[i] {
				t.Fatalf("fn %d ran twice", i)
			}
			seen[i] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d woke within 10s", len(seen), n)
		}
	}
}

// TestParkErrorsWakesOnResetOnly: a socket whose peer half-closed is always
// readable; ParkErrors ignores that and wakes when the peer resets.
func TestParkErrorsWakesOnResetOnly(t *testing.T) {
	p := newParker(t)
	a, b := pair(t)
	a.Write([]byte("x"))
	a.CloseWrite()
	woke := make(chan struct{})
	if _, err := p.ParkErrors(rawConn(t, b), func() { close(woke) }); err != nil {
		t.Fatal(err)
	}
	// The Parker has looked at the half-closed socket by then.
	flush(t, p)
	select {
	case <-woke:
		t.Fatal("ParkErrors woke for bytes and an end of stream")
	default:
	}
	a.SetLinger(0)
	a.Close() // a reset
	fired(t, woke, "reset")
}
