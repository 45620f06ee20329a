//go:build linux

package evloop

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestAbortAllStuckInTheNextTurn: AbortAll comes while a turn runs; that
// turn ends at once, and the next one gets stuck in a filter call (a Chain
// timer, as a guest running to its time limit) before it reaches the
// abort in its inbox. The loop has begun a turn since the abort, but made
// no progress toward it: the sockets are reset from outside within a few
// busyGraces, not when the call returns.
func TestAbortAllStuckInTheNextTurn(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, echo)
	const stuck = 600 * time.Millisecond
	inData := make(chan struct{})
	aborted := make(chan struct{})
	a := &chainAcceptor{target: target, filtered: [2]bool{true, true}, done: make(chan Stats, 1)}
	a.chain = func() Chain {
		return &funcChain{
			data: func(from int, b []byte, o *Output) error {
				if string(b) != "go" {
					o.Write(1-from, b)
					return nil
				}
				inData <- struct{}{}
				<-aborted     // AbortAll was called during this turn
				o.SetTimer(1) // fires in the next turn, before its inbox
				return nil
			},
			timer: func(o *Output) error {
				time.Sleep(stuck)
				return nil
			},
		}
	}
	l, addr := startAccepting(t, a)
	c := dial(t, addr)
	buf := make([]byte, 16)
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("go"))
	<-inData
	start := time.Now()
	l.AbortAll(errors.New("shutdown"))
	close(aborted)
	c.SetReadDeadline(time.Now().Add(testWait))
	_, err := c.Read(buf)
	// Four busyGraces: the stuck turn is seen on the second look; a loaded
	// machine may run the looks late, never as late as the call's end.
	if took := time.Since(start); !isReset(err) || took > stuck/2 {
		t.Errorf("the client read %v %v after AbortAll; want a reset within about 2 × busyGrace (%v), long before the stuck call's end (%v)", err, took, busyGrace, stuck)
	}
	if s := a.waitDone(t); s.Reason != Aborted {
		t.Errorf("Reason %v, want Aborted", s.Reason)
	}
	if l.outsideResets.Load() == 0 {
		t.Error("no socket was reset from outside; the client's reset came from the loop, after the stuck call")
	}
}

// TestAbortAllResetsWhileDoneBlocks: AbortAll on a plain loop whose first
// Done does not return (the host's close hooks run there, and a filter's
// close may run to its time limit). Every connection gets its reset all
// the same: the abort's turn closes every socket before it calls a Done,
// and having reached the abort, the loop is not taken for a stuck one: no
// socket is reset from outside.
func TestAbortAllResetsWhileDoneBlocks(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	const n = 20
	// Done sends on an unbuffered channel: it blocks until the test takes.
	a := &chainAcceptor{target: target, chain: func() Chain { return nil }, done: make(chan Stats)}
	l, addr := startAccepting(t, a)
	errs := abortConnected(t, l, addr, n) // the first Done still blocked
	for i, err := range errs {
		if !isReset(err) {
			t.Errorf("connection %d: read %v, want a reset", i, err)
		}
	}
	for range n {
		if s := a.waitDone(t); s.Reason != Aborted {
			t.Errorf("Reason %v, want Aborted", s.Reason)
		}
	}
	wantReachedAbort(t, l)
}

// TestAbortAllManyResets: AbortAll on a plain loop with many connections,
// whose abort turn (a setsockopt and two closes each) outlasts busyGrace
// on a slow machine: the loop has reached the abort, so it ends every
// connection itself, none is reset from outside.
func TestAbortAllManyResets(t *testing.T) {
	// In parallel with the other tests: under -race and load, they kept
	// the loop woken by the abort's post from running within busyGrace
	// (all 1500 connections shut down from outside, with a FIN then, 5
	// runs in 10) until the abort took a loop still in epoll_wait for a
	// waiting one.
	t.Parallel()
	_, target := startServer(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	const n = 1500
	l, _, a, addr := startForwarder(t, target, fwdOptions{})
	errs := abortConnected(t, l, addr, n)
	fins := 0
	for _, err := range errs {
		if !isReset(err) {
			fins++
		}
	}
	if fins > 0 {
		t.Errorf("%d of %d aborted connections did not end with a reset", fins, n)
	}
	for range n {
		a.waitDone(t)
	}
	wantReachedAbort(t, l)
}

// TestAbortAllDescheduledMidTurn: AbortAll while the loop stands still in
// the middle of a turn, in its own code rather than in a call out of it (a
// loaded machine gave its thread no CPU there for 5 busyGraces). The loop
// is not stuck: it reaches the abort, and ends every connection itself.
// It was taken for a stuck one, and its sockets shut down from outside
// (with a FIN then).
func TestAbortAllDescheduledMidTurn(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	const n = 20
	l, _, a, addr := startForwarder(t, target, fwdOptions{})
	aborting := make(chan struct{})
	var once sync.Once
	if !l.call(func() {
		l.midTurn = func() {
			select {
			case <-aborting:
				once.Do(func() { time.Sleep(5 * busyGrace) })
			default:
			}
		}
	}) {
		t.Fatal("loop stopped")
	}
	cs := dialConnected(t, l, addr, n)
	close(aborting) // the next turn, the abort's at the latest, stands still
	l.AbortAll(errors.New("shutdown"))
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(testWait))
		if _, err := c.Read(make([]byte, 1)); !isReset(err) {
			t.Errorf("connection %d: read %v after AbortAll, want a reset", i, err)
		}
	}
	for range n {
		a.waitDone(t)
	}
	wantReachedAbort(t, l)
}

// wantReachedAbort fails t if l's sockets were reset from outside: the
// loop was taken for one stuck in a call out of the engine. (The peers
// cannot tell: either way they get a reset.)
func wantReachedAbort(t *testing.T, l *Loop) {
	t.Helper()
	if n := l.outsideResets.Load(); n != 0 {
		t.Errorf("%d sockets reset from outside: the loop was taken for a stuck one", n)
	}
}

// TestAbortAllStuckInTheLogger: the loop logs (a listener's accept
// failed) through the caller's logger, whose handler blocks, as one
// writing to a pipe nobody reads does. That is a call out of the engine
// like a filter's: AbortAll resets the loop's sockets from outside rather
// than wait for the handler.
func TestAbortAllStuckInTheLogger(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, echo)
	h := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{})}
	l, err := newLoop(slog.New(h), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	t.Cleanup(h.unblock) // before Close: the loop must return from the handler
	a := &testAcceptor{target: target, dialTimeout: testWait, done: make(chan Stats, 1)}
	fd, addr := listenFD(t)
	if _, err := l.AddListener(fd, a); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	cs := dialConnected(t, l, addr.String(), 1)
	// A second listener whose accept fails: shut down, it reports an
	// event and accept4 fails with EINVAL, which the loop logs.
	fd2, _ := listenFD(t)
	if _, err := l.AddListener(fd2, a); err != nil {
		unix.Close(fd2)
		t.Fatal(err)
	}
	unix.Shutdown(fd2, unix.SHUT_RD)
	select {
	case <-h.entered:
	case <-time.After(testWait):
		t.Fatal("the loop did not log the failed accept")
	}
	start := time.Now()
	l.AbortAll(errors.New("shutdown"))
	cs[0].SetReadDeadline(time.Now().Add(testWait))
	_, err = cs[0].Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client's connection was not ended within %v of AbortAll while the loop was in its logger", testWait)
	}
	t.Logf("ended after %v: %v", time.Since(start), err)
	if !isReset(err) {
		t.Errorf("client read %v; want a reset", err)
	}
	h.unblock()
	if s := a.waitDone(t); s.Reason != Aborted {
		t.Errorf("Reason %v, want Aborted", s.Reason)
	}
}

// blockingHandler is a slog.Handler whose first record blocks until
// unblock.
type blockingHandler struct {
	once, unblockOnce sync.Once
	entered, release  chan struct{}
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler            { return h }
func (h *blockingHandler) unblock()                                 { h.unblockOnce.Do(func() { close(h.release) }) }

func (h *blockingHandler) Handle(context.Context, slog.Record) error {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	return nil
}

// abortConnected makes n connections to addr, waits until l has connected
// them all to the target, calls AbortAll and returns what a read on each
// client socket then gets.
func abortConnected(t *testing.T, l *Loop, addr string, n int) []error {
	t.Helper()
	cs := dialConnected(t, l, addr, n)
	l.AbortAll(errors.New("shutdown"))
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range cs {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(testWait))
			_, errs[i] = c.Read(make([]byte, 1))
		})
	}
	wg.Wait()
	return errs
}

// dialConnected makes n connections to addr and waits until l has
// connected them all to the target.
func dialConnected(t *testing.T, l *Loop, addr string, n int) []*net.TCPConn {
	t.Helper()
	cs := make([]*net.TCPConn, n)
	for i := range cs {
		cs[i] = dial(t, addr)
	}
	waitFor(t, l, "connected", func() bool {
		for _, c := range l.conns {
			if c.state != connected {
				return false
			}
		}
		return len(l.conns) == n
	})
	return cs
}

// TestAbortOnAStoppedLoopLeavesNothing: AbortAll after the loop stopped has
// nothing to end (the loop ended every connection). It armed a look at the
// loop every busyGrace that never stopped, since the abort posted to the
// stopped loop was never reached: the loop stayed reachable from the timer
// for the life of the process. (Output.Abort has the same guard.)
func TestAbortOnAStoppedLoopLeavesNothing(t *testing.T) {
	t.Parallel()
	collected := make(chan struct{})
	func() {
		l, err := newLoop(nil, true)
		if err != nil {
			t.Fatal(err)
		}
		runtime.AddCleanup(l, func(ch chan struct{}) { close(ch) }, collected)
		l.Close()
		l.AbortAll(errors.New("late"))
	}()
	deadline := time.Now().Add(testWait)
	for {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the stopped loop was never collected: something (a look at it after the abort) still holds it")
		}
	}
}

// TestAbortAllStuckSparesAnEndedConnection: a connection ends cleanly (its
// reply written into the client's socket, where the client has not read
// it yet, and both FINs forwarded) in the turn where the loop then gets
// stuck, before its end-of-turn close; AbortAll comes meanwhile. The
// reset from outside is for the connections still open: it would drop the
// ended one's queued reply, whose Stats already say Ended with every byte
// written. That one keeps its bytes and its FIN; an open one beside it is
// reset.
func TestAbortAllStuckSparesAnEndedConnection(t *testing.T) {
	t.Parallel()
	const reply = 256 << 10
	var first atomic.Bool
	_, target := startServer(t, func(c *net.TCPConn) {
		if first.CompareAndSwap(false, true) {
			c.Write(make([]byte, reply))
			c.CloseWrite()
		}
		io.Copy(io.Discard, c)
	})
	l, err := newLoop(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	a := &testAcceptor{target: target, dialTimeout: testWait, done: make(chan Stats, 2)}
	fd, addr := listenFD(t)
	// Accepted sockets inherit the listener's send buffer: room for the
	// whole reply, which the client (a 4 KiB receive buffer) leaves there.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	if _, err := l.AddListener(fd, a); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	d := net.Dialer{Control: testkit.ReceiveBuffer(4 << 10)}
	dial := func() *net.TCPConn {
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn)
	}
	ended := dial()
	waitFor(t, l, "the reply written and the server's FIN forwarded", func() bool {
		return len(l.conns) == 1 && l.conns[0].half[server].done
	})
	open := dial()
	waitFor(t, l, "the second connection connected", func() bool {
		return len(l.conns) == 2 && l.conns[1].state == connected
	})
	// Hold the loop until the client's FIN is in its socket, so that the
	// next turn reads it (the connection ends) and then runs the stuck
	// function posted meanwhile, before its end-of-turn close.
	held, hold := make(chan struct{}), make(chan struct{})
	l.post(func() {
		close(held)
		pfd := []unix.PollFd{{Fd: int32(l.conns[0].ep[client].fd), Events: unix.POLLRDHUP}}
		unix.Poll(pfd, int(testWait/time.Millisecond))
		<-hold
	})
	<-held
	ended.CloseWrite()
	stuck, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	l.post(func() { close(stuck); <-release })
	close(hold)
	<-stuck
	l.AbortAll(errors.New("shutdown"))
	// The open connection is reset from outside while the loop is stuck
	// (resetLive holds fdMu until it has reset both its sockets, so the
	// loop's close, and Done, come after: the count below is final).
	open.SetReadDeadline(time.Now().Add(testWait))
	if _, err := open.Read(make([]byte, 1)); !isReset(err) {
		t.Errorf("the open connection's client read %v; want a reset", err)
	}
	close(release)
	reasons := map[Reason]Stats{}
	for range 2 {
		s := a.waitDone(t)
		reasons[s.Reason] = s
	}
	if s, ok := reasons[Ended]; !ok || s.Written[1] != reply { // index 1: server to client
		t.Fatalf("Done reasons %v; want one Ended with the %d reply bytes written, one Aborted", reasons, reply)
	}
	got, err := io.Copy(io.Discard, ended)
	if got != reply || err != nil {
		t.Errorf("the ended connection's client read %d of %d bytes, then %v; want all of them and its FIN", got, reply, err)
	}
	if n := l.outsideResets.Load(); n != 2 {
		t.Errorf("%d sockets reset from outside; want the open connection's 2", n)
	}
}
