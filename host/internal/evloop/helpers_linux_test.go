//go:build linux

package evloop

import (
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

const (
	// testWait bounds every wait for an event in the tests.
	testWait = 10 * time.Second
	// pollStep is how often a condition that has no event is re-checked.
	pollStep = time.Millisecond
	// listenBacklog is the backlog of the test listeners.
	listenBacklog = 4096
)

// Tests that call checkFDs stay serial: it counts the process's fds, which
// any test running alongside opens and closes. The others (their own loop,
// listener and servers; turn and error counts of their own loop only) run
// in parallel, after the serial ones, mostly waiting, so more of them than
// the two cores run at once.
func TestMain(m *testing.M) {
	testkit.DefaultParallel(8)
	// Make the runtime open its own netpoll fds before any fd count.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	goleak.VerifyTestMain(m)
}

// fdCount is the number of open fds of the process.
func fdCount(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkFDs fails the test if it leaves more fds open than it found. Call it
// first so its cleanup runs last.
func checkFDs(t *testing.T) {
	before := fdCount(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(testWait)
		for fdCount(t) > before {
			if time.Now().After(deadline) {
				t.Errorf("fd leak: %d fds open before the test, %d after", before, fdCount(t))
				return
			}
			// net.Conn closes may lag their goroutines; and the standard
			// library's splice (echo's io.Copy between two TCP
			// connections) keeps its pipes in a sync.Pool whose entries a
			// finalizer closes only after two garbage collections, which
			// an idle test process may not run for seconds (about 5 s
			// a test here). The loop's own fds are raw descriptors with
			// no finalizer: a collection closes none of them, so their
			// leaks still fail.
			runtime.GC()
			time.Sleep(pollStep)
		}
	})
}

// listenFD returns a raw non-blocking listening socket on 127.0.0.1.
func listenFD(t testing.TB) (int, netip.AddrPort) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, sockaddrToAddrPort(sa)
}

// testAcceptor plans every connection to target and reports Done on a
// channel; with limit > 0 it admits at most limit open connections.
type testAcceptor struct {
	target      netip.AddrPort
	dialTimeout time.Duration
	idleTimeout time.Duration
	limit       int
	take        func(fd int) bool // if set and true, the caller keeps fd

	done     chan Stats
	accepted atomic.Int64
	ln       atomic.Pointer[Listener]
	active   int // loop thread only
}

func (a *testAcceptor) Admit() bool {
	return a.limit <= 0 || a.active < a.limit
}

func (a *testAcceptor) Accepted(fd int, peer netip.AddrPort) *Plan {
	a.accepted.Add(1)
	if a.take != nil && a.take(fd) {
		return nil
	}
	a.active++
	return &Plan{
		Target:      a.target,
		DialTimeout: a.dialTimeout,
		IdleTimeout: a.idleTimeout,
		Done: func(s Stats) {
			a.active--
			if ln := a.ln.Load(); ln != nil && a.limit > 0 {
				ln.Resume()
			}
			select {
			case a.done <- s:
			default:
				panic("testAcceptor: done channel full")
			}
		},
	}
}

// waitDone returns the next finished connection's stats.
func (a *testAcceptor) waitDone(t testing.TB) Stats {
	t.Helper()
	select {
	case s := <-a.done:
		return s
	case <-time.After(testWait):
		t.Fatal("timed out waiting for Done")
		return Stats{}
	}
}

// fwdOptions configures startForwarder.
type fwdOptions struct {
	readWrite   bool // move bytes with read/write instead of splice
	dialTimeout time.Duration
	idleTimeout time.Duration
	limit       int
	take        func(fd int) bool
}

// startForwarder starts a loop forwarding a new listener to target.
func startForwarder(t testing.TB, target netip.AddrPort, o fwdOptions) (*Loop, *Listener, *testAcceptor, string) {
	t.Helper()
	l, err := newLoop(nil, !o.readWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if o.dialTimeout == 0 {
		o.dialTimeout = testWait
	}
	a := &testAcceptor{target: target, dialTimeout: o.dialTimeout, idleTimeout: o.idleTimeout,
		limit: o.limit, take: o.take, done: make(chan Stats, 10000)}
	fd, addr := listenFD(t)
	ln, err := l.AddListener(fd, a)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	a.ln.Store(ln)
	return l, ln, a, addr.String()
}

// testServer runs handle on a goroutine for each accepted connection.
type testServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// startServer starts a TCP server on 127.0.0.1; its cleanup closes the
// listener and every connection and waits for the handlers.
func startServer(t testing.TB, handle func(c *net.TCPConn)) (*testServer, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s, netip.MustParseAddrPort(ln.Addr().String())
}

// echo copies what it reads back, then forwards the FIN.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// dial connects to addr; the connection is closed at cleanup.
func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// inspect runs f on the loop thread and waits for it.
func inspect(t testing.TB, l *Loop, f func()) {
	t.Helper()
	if !l.call(f) {
		t.Fatal("loop stopped")
	}
}

// waitFor polls cond on the loop thread until it holds.
func waitFor(t testing.TB, l *Loop, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		var ok bool
		inspect(t, l, func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollStep)
	}
}

// isReset reports whether err is what a peer sees after a reset.
func isReset(err error) bool {
	return errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}

// TestTimerArithmetic: a deadline past the end of time saturates instead of
// wrapping into the past, and epoll_wait's timeout (a C int of
// milliseconds) is rounded up and bounded, whatever the deadline.
func TestTimerArithmetic(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ t, d, want int64 }{
		{5, 10, 15},
		{5, math.MaxInt64, math.MaxInt64},
		{math.MaxInt64 - 1, 1, math.MaxInt64},
		{math.MaxInt64 - 1, 2, math.MaxInt64},
	} {
		if got := addSat(c.t, c.d); got != c.want {
			t.Errorf("addSat(%d, %d) = %d, want %d", c.t, c.d, got, c.want)
		}
	}
	hour := int(time.Hour / time.Millisecond)
	for _, c := range []struct {
		when, now int64
		want      int
	}{
		{100, 100, 0},
		{100, 200, 0},
		{1, 0, 1},
		{int64(1500 * time.Microsecond), 0, 2},
		{int64(2 * time.Millisecond), 0, 2},
		{int64(30 * 24 * time.Hour), 0, hour}, // past a C int's 24.8 days
		{math.MaxInt64, 0, hour},
		{math.MaxInt64, 500, hour}, // d + 999999 would overflow
	} {
		if got := waitMillis(c.when, c.now); got != c.want {
			t.Errorf("waitMillis(%d, %d) = %d, want %d", c.when, c.now, got, c.want)
		}
	}
}
