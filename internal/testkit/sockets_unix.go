//go:build unix

package testkit

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// Refusing returns a loopback address that refuses connections: a socket
// bound to it that does not listen, kept until the test ends, so that no
// other test's listener can take the port (as one can take a port that
// was merely free a moment ago).
func Refusing(t testing.TB) string {
	t.Helper()
	_, addr := boundSocket(t)
	return addr
}

// boundSocket returns a TCP socket bound to a free port of 127.0.0.1 and
// its address; Cleanup closes it.
func boundSocket(t testing.TB) (fd int, addr string) {
	t.Helper()
	// SOCK_CLOEXEC is Linux's; this builds on every Unix (the fork lock
	// keeps a child started meanwhile from inheriting the socket).
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// BlackHole returns a loopback address whose listener never accepts and
// whose backlog is full, so a connect(2) to it gets no answer at all: the
// target of a dial-timeout test.
func BlackHole(t testing.TB) string {
	t.Helper()
	_, addr := BlackHoleListener(t)
	return addr
}

// BlackHoleListener is BlackHole that also returns the listening socket:
// accepting from it makes room in the backlog, and the next SYN of a
// connect in progress (about a second later) connects. Cleanup closes it.
func BlackHoleListener(t testing.TB) (fd int, addr string) {
	t.Helper()
	fd, addr = boundSocket(t)
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the backlog until a dial goes unanswered.
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fd, addr
			}
			t.Fatalf("filling the backlog of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("the backlog of %s never filled up", addr)
	return -1, ""
}
