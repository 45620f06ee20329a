//go:build linux

package evloop

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxEvents is the size of the epoll_wait batch.
	maxEvents = 256
	// socketEvents is the fixed, edge-triggered interest of every socket.
	socketEvents = unix.EPOLLIN | unix.EPOLLPRI | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	// listenEvents is the interest of a listener that is accepting.
	// Level-triggered: Listener.accept takes one connection per event.
	// Exclusive: when several loops poll one listening socket (one per
	// CPU, each with its own descriptor of it), a new connection wakes
	// one of them, not all. A paused listener is taken out of the epoll
	// set (EPOLL_CTL_MOD cannot change an exclusive registration).
	listenEvents = unix.EPOLLIN | unix.EPOLLEXCLUSIVE
	// eventfdSize is the size of an eventfd counter.
	eventfdSize = 8
)

// handler receives the epoll events of one fd, on the loop thread.
type handler interface {
	onEvent(events uint32)
}

// Loop is one epoll loop, run by one goroutine. It owns every fd given to
// it, and every pipe, buffer and timer it uses.
type Loop struct {
	turns  uint64 // epoll_waits made (loop thread; read by tests through call)
	logger *slog.Logger
	epfd   int
	wakefd int
	done   chan struct{} // closed when the loop goroutine has returned
	open   atomic.Int64  // open connections, for Conns

	// The inbox: functions posted by other goroutines, run on the loop.
	mu          sync.Mutex
	inbox       []func()
	wakePending bool // an eventfd write is outstanding
	stopped     bool // the loop no longer takes posts
	closeOnce   sync.Once

	// The connections' socket fds, for AbortAll to reset them from
	// another goroutine while the loop is busy (inside a filter call): an
	// fd is added when a connection gets it and removed when the loop
	// closes it, both under fdMu, so AbortAll never touches a closed or
	// reused number. Each conn keeps its own in conn.live, under fdMu too,
	// for Output.Abort's.
	fdMu sync.Mutex
	live map[int]*conn // fd -> the connection it belongs to
	// outsideResets counts the sockets reset from another goroutine
	// (resetLive; not those only shut down, the disconnect having failed):
	// tests tell by it a loop taken for a stuck one, the peers' resets
	// being the same either way.
	outsideResets atomic.Uint64
	// aborting is AbortAll's cause, once it was called: a connection that
	// ends afterwards, of a socket AbortAll reset or otherwise, ends
	// aborted with it.
	aborting atomic.Pointer[error]
	// calls is published at the start and at the end of each call out of
	// the engine (see callOut): a Chain method, a Done, an Acceptor method,
	// a log record, a posted function. It is odd inside a call.
	// resetIfStuck takes a loop that shows the same odd value at two looks
	// for one stuck in that call (a filter's, a guest's); the engine's code
	// between calls is bounded, and a loop that stands still there is
	// waiting in epoll_wait or for a CPU, not stuck.
	calls     atomic.Uint64
	callSeq   uint64 // boundaries so far, times two (loop thread)
	callDepth int    // nested callOuts (loop thread)

	// Loop-thread state below; never touched by another goroutine.

	// midTurn, when a test sets it, runs in each turn after epoll_wait, as
	// the engine's own code: a loop descheduled mid-turn.
	midTurn   func()
	useSplice bool
	epoch     time.Time
	now       int64 // loop clock (ns since epoch), refreshed after each wait
	stopping  bool
	handlers  []handler // indexed by fd
	conns     []*conn   // open connections; conn.slot is the index
	listeners map[*Listener]struct{}
	timers    timerHeap
	runq      []*conn // connections that used their budget and must run again
	spareRunq []*conn
	finished  []*conn // finished connections whose fds close at the end of the turn
	spareBox  []func()
	freePipes []pipe
	freeBufs  [][]byte
	events    []unix.EpollEvent
	wakeBuf   [eventfdSize]byte
	yielded   int64 // loop clock at the last pass through the scheduler (run)
}

// New creates a loop and starts its goroutine. A nil logger discards logs.
func New(logger *slog.Logger) (*Loop, error) {
	return newLoop(logger, true)
}

// newLoop is New with the choice of splice (true) or read/write to move
// bytes; tests and benchmarks use it to compare both.
func newLoop(logger *slog.Logger, useSplice bool) (*Loop, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("evloop: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("evloop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, fmt.Errorf("evloop: epoll_ctl add eventfd: %w", err)
	}
	l := &Loop{
		logger:    logger,
		epfd:      epfd,
		wakefd:    wakefd,
		done:      make(chan struct{}),
		useSplice: useSplice,
		epoch:     time.Now(),
		listeners: make(map[*Listener]struct{}),
		events:    make([]unix.EpollEvent, maxEvents),
		live:      make(map[int]*conn),
	}
	go l.run()
	return l, nil
}

// Close closes every listener and connection of the loop at once
// (connections get a reset: SO_LINGER 0, and Done gets ErrClosed), stops
// the loop and returns; it never waits on a peer. It is idempotent. It must
// not be called from a callback running on the loop.
func (l *Loop) Close() {
	l.closeOnce.Do(func() {
		l.post(func() { l.stopping = true })
	})
	<-l.done
}

// Abort closes every connection of the loop at once with a reset, giving
// cause (or "connection aborted" if cause is nil) to their Done, without
// stopping the loop or its listeners. It is safe from any goroutine but a
// loop callback and waits only for the loop to have done it.
func (l *Loop) Abort(cause error) {
	if cause == nil {
		cause = errAborted
	}
	l.call(func() { l.abortNow(cause) })
}

// abortNow finishes every connection with cause and closes their fds, on
// the loop thread.
func (l *Loop) abortNow(cause error) {
	l.finishAll(cause)
	l.flush()
}

// Conns returns the number of open connections (accepted with a plan and
// whose Done has not been called yet).
func (l *Loop) Conns() int {
	return int(l.open.Load())
}

// post queues f to run on the loop thread and wakes the loop. It reports
// false if the loop has stopped (f will never run).
func (l *Loop) post(f func()) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.inbox = append(l.inbox, f)
	var err error
	if !l.wakePending {
		l.wakePending = true
		// Written under the lock so the loop cannot close wakefd meanwhile.
		one := [eventfdSize]byte{}
		binary.NativeEndian.PutUint64(one[:], 1)
		if _, err = unix.Write(l.wakefd, one[:]); errors.Is(err, unix.EAGAIN) {
			err = nil
		}
	}
	l.mu.Unlock()
	if err != nil {
		// Logged after the unlock: a handler that blocks must not hold the
		// loop, which takes l.mu for its inbox.
		l.logger.Error("evloop: wake loop", "err", err)
	}
	return true
}

// call runs f on the loop thread and waits for it. It reports false if the
// loop has stopped.
func (l *Loop) call(f func()) bool {
	ran := make(chan struct{})
	if !l.post(func() { f(); close(ran) }) {
		return false
	}
	<-ran
	return true
}

// run is the loop goroutine. It blocks in epoll_wait through an ordinary
// system call, without locking its OS thread: when the call returns soon
// (a busy loop) the goroutine takes its P back at no cost, and when it
// sleeps long the runtime lends the P to other goroutines meanwhile. Two
// other ways were measured (redis-benchmark through the tunnel, CPU of the
// tunnel per request; see RATIONALE.md): a thread locked with
// runtime.LockOSThread paid futex wake-ups at every event (0.6 futex and
// 0.35 nanosleep calls per request with 50 clients), and parking on Go's
// poller (the epoll fd registered with it) paid the runtime's idle-P
// search instead (7 epoll_pwait calls per connection; 31 µs per request
// with one client against 22 µs blocking, nginx 19.5).
func (l *Loop) run() {
	defer close(l.done)
	cause := ErrClosed
	for !l.stopping {
		l.turns++
		n, err := l.wait()
		if err != nil {
			cause = fmt.Errorf("evloop: epoll_wait: %w", err)
			l.log(slog.LevelError, "evloop: loop stopped", "err", err)
			break
		}
		l.now = int64(time.Since(l.epoch))
		if l.now-l.yielded >= int64(yieldEvery) {
			l.yielded = l.now
			runtime.Gosched()
		}
		if l.midTurn != nil {
			l.midTurn()
		}
		woken := false
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.wakefd {
				woken = true
				continue
			}
			if fd < len(l.handlers) && l.handlers[fd] != nil {
				l.handlers[fd].onEvent(ev.Events)
			}
		}
		l.runTimers()
		l.runQueue()
		if woken {
			l.drainInbox()
		}
		l.flush()
	}
	l.shutdown(cause)
}

// yieldEvery is how often the loop goroutine passes through the Go
// scheduler (runtime.Gosched, a few hundred nanoseconds). Blocking in
// epoll_wait through system calls, it would otherwise never enter the
// scheduler, and the runtime's monitor thread (sysmon) takes a goroutine
// whose scheduling tick has not moved for 10 ms for one that runs without
// end: it asks it to yield, retakes its P while it sits in a system call
// and hands the P to another thread, and keeps polling at its fastest
// (every 20 µs) instead of backing off to 10 ms. Measured through
// examples/bench (RATIONALE.md, "Why does the event loop yield to the Go
// scheduler every 2 ms?"): the tunnel's CPU per request with one client
// 1.17-1.20x nginx's without, 0.97-0.99x with.
const yieldEvery = 2 * time.Millisecond

// wait returns the number of events in l.events: at once if connections
// wait for another turn, else once an event comes or the next timer is due
// (then 0).
func (l *Loop) wait() (int, error) {
	timeout := -1
	if len(l.runq) > 0 {
		timeout = 0
	} else if when, ok := l.timers.next(); ok {
		timeout = waitMillis(when, int64(time.Since(l.epoch)))
	}
	for {
		n, err := unix.EpollWait(l.epfd, l.events, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

// maxWait bounds one epoll_wait: its timeout is a C int of milliseconds
// (24.8 days at most), and a timer further away (a 30-day idle timeout, a
// plugin's timer at the end of time) is waited for in turns of an hour.
const maxWait = time.Hour

// waitMillis is epoll_wait's timeout for a timer due at when, at now (loop
// clock, ns): 0 when due, else the milliseconds to it rounded up, at most
// maxWait's.
func waitMillis(when, now int64) int {
	d := when - now // no overflow: both are >= 0
	switch {
	case d <= 0:
		return 0
	case d >= int64(maxWait):
		return int(maxWait / time.Millisecond)
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// runTimers fires the timers that are due.
func (l *Loop) runTimers() {
	for t := l.timers.popExpired(l.now); t != nil; t = l.timers.popExpired(l.now) {
		t.fire()
	}
}

// runQueue gives another turn to the connections that used their budget.
func (l *Loop) runQueue() {
	if len(l.runq) == 0 {
		return
	}
	q := l.runq
	l.runq = l.spareRunq[:0]
	for i, c := range q {
		c.queued = false
		c.run()
		q[i] = nil
	}
	l.spareRunq = q[:0]
}

// enqueue schedules c for another turn after the current one.
func (l *Loop) enqueue(c *conn) {
	if !c.queued {
		c.queued = true
		l.runq = append(l.runq, c)
	}
}

// drainInbox runs the functions posted by other goroutines.
func (l *Loop) drainInbox() {
	// Reset the eventfd before taking the inbox: a post that comes later
	// writes it again.
	if _, err := unix.Read(l.wakefd, l.wakeBuf[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		l.log(slog.LevelError, "evloop: read eventfd", "err", err)
	}
	l.mu.Lock()
	box := l.inbox
	l.inbox = l.spareBox[:0]
	l.wakePending = false
	l.mu.Unlock()
	for i, f := range box {
		l.callOut()
		f()
		l.callBack()
		box[i] = nil
	}
	l.spareBox = box[:0]
}

// flush closes the fds of the connections finished during this turn and
// then calls their Done. Closing is deferred to the end of the turn so that
// a stale event of the same epoll batch never reaches a reused fd number;
// every fd is closed before the first Done, which runs the host's and the
// filters' code, so that a Done that lasts holds back no peer's end.
func (l *Loop) flush() {
	for _, c := range l.finished {
		for s := range c.ep {
			if fd := c.ep[s].fd; fd >= 0 {
				l.setHandler(fd, nil)
				l.closeLive(c, side(s))
				c.ep[s].fd = -1
			}
		}
		l.open.Add(-1)
	}
	for i, c := range l.finished {
		l.finished[i] = nil
		if c.plan.Done != nil {
			l.callOut()
			c.plan.Done(c.stats)
			l.callBack()
		}
	}
	l.finished = l.finished[:0]
}

// finishAll finishes every open connection with cause (Reason Aborted).
func (l *Loop) finishAll(cause error) {
	for len(l.conns) > 0 {
		l.conns[len(l.conns)-1].abort(cause)
	}
}

// Each runs start and then f with the Owner and the figures so far of every
// open connection, all on the loop thread in one turn (so no Done runs in
// between: what start reads of the finished connections and what f sees of
// the open ones add up), and returns when it has. start and f must not
// block. Safe from any goroutine but a loop callback; on a closed loop it
// does nothing.
func (l *Loop) Each(start func(), f func(owner any, s Stats)) {
	l.call(func() {
		start()
		for _, c := range l.conns {
			f(c.plan.Owner, c.stats)
		}
	})
}

// shutdown releases everything the loop owns; the loop then returns.
func (l *Loop) shutdown(cause error) {
	l.stopping = true
	l.finishAll(cause)
	l.flush()
	// Run what was posted before the inbox closed so no caller waits forever.
	l.mu.Lock()
	l.stopped = true
	box := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, f := range box {
		l.callOut()
		f()
		l.callBack()
	}
	l.finishAll(cause) // in case a late post created one (it cannot: AddListener refuses)
	l.flush()
	for ln := range l.listeners {
		ln.close()
	}
	for _, p := range l.freePipes {
		p.close()
	}
	l.freePipes = nil
	l.freeBufs = nil
	l.timers = nil
	unix.Close(l.wakefd)
	unix.Close(l.epfd)
}

// setHandler routes the events of fd to h (nil: ignore them).
func (l *Loop) setHandler(fd int, h handler) {
	if fd >= len(l.handlers) {
		if h == nil {
			return
		}
		grown := make([]handler, max(fd+1, 2*len(l.handlers)))
		copy(grown, l.handlers)
		l.handlers = grown
	}
	l.handlers[fd] = h
}

// register adds fd to the epoll set with the given interest.
func (l *Loop) register(fd int, events uint32, h handler) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
	}
	l.setHandler(fd, h)
	return nil
}

// addLive records fd as c's socket on side s (see Loop.live, conn.live).
func (l *Loop) addLive(c *conn, s side, fd int) {
	l.fdMu.Lock()
	l.live[fd] = c
	c.live[s] = fd
	l.fdMu.Unlock()
}

// closeLive closes c's socket on side s and forgets it.
func (l *Loop) closeLive(c *conn, s side) {
	l.fdMu.Lock()
	fd := c.live[s]
	delete(l.live, fd)
	c.live[s] = -1
	unix.Close(fd)
	l.fdMu.Unlock()
}

// resetLive resets every connection socket of the loop (or only those of
// one connection), from any goroutine, unless the loop has reached the
// abort meanwhile: the peers see the reset an abort promises at once, and
// the loop, once back from whatever it is doing, finds its sockets ended
// and finishes them. A connection that ended cleanly in the turn the loop
// is stuck in (conn.ended) is left alone: its FINs are sent, and a reset would drop
// what its peers have still to read.
func (l *Loop) resetLive(reached *atomic.Bool, only *conn) {
	l.fdMu.Lock()
	defer l.fdMu.Unlock()
	if reached.Load() {
		// The loop got to the abort since the look (it sets reached
		// before it closes anything): the sockets are its own to end,
		// and those it has closed may have new owners already.
		return
	}
	if only != nil {
		if !only.ended.Load() {
			for _, fd := range only.live {
				if fd >= 0 {
					l.resetFromOutside(fd)
				}
			}
		}
		return
	}
	for fd, c := range l.live {
		if !c.ended.Load() {
			l.resetFromOutside(fd)
		}
	}
}

// resetFromOutside ends the connection of socket fd with a reset without
// closing the descriptor, which is the loop's to close: connect(2) to an
// AF_UNSPEC address disconnects a TCP socket (Linux's tcp_disconnect),
// which sends a RST to the peer of a connected one, drops what is queued,
// and wakes the loop's epoll with EPOLLERR|EPOLLHUP; the loop's first
// call on it (a read, a write, SO_ERROR) gets ECONNRESET, later ones
// ENOTCONN or EPIPE. (close(2) with SO_LINGER 0 would reset
// too, but would free the number while the loop holds it; shutdown(2),
// used before, sends a FIN, so a client took the cut stream for a whole
// one.) Should the disconnect fail, shutdown(2) still ends the
// connection. Called with fdMu held, so fd is still the loop's.
func (l *Loop) resetFromOutside(fd int) {
	var unspec [unix.SizeofSockaddrInet6]byte // sa_family 0: AF_UNSPEC
	if _, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&unspec[0])), uintptr(len(unspec))); errno != 0 {
		unix.Shutdown(fd, unix.SHUT_RDWR)
		return
	}
	l.outsideResets.Add(1)
}

// callOut marks the start of a call out of the engine (see calls), and
// callBack its end. Every boundary moves calls, and its low bit says
// whether the loop is inside a call: a call nested in another (a posted
// function's Done calls, the Chain it opens) moves it too, so a posted
// function that runs many short calls is not taken for one that stands
// still. One atomic store a boundary.
func (l *Loop) callOut() {
	l.callDepth++
	l.publishCalls()
}

func (l *Loop) callBack() {
	l.callDepth--
	l.publishCalls()
}

func (l *Loop) publishCalls() {
	l.callSeq += 2
	l.calls.Store(l.callSeq | uint64(min(l.callDepth, 1)))
}

// busyGrace is how long an abort leaves the loop to end the sockets itself
// (with a reset) while it stays inside one call out of the engine, before
// resetting them from outside, the loop being stuck (inside a filter
// call, a guest running to its time limit). An abort from within a
// callback (a plugin's failure closing its connections) is done by the
// loop well within it, so its peers see the reset they always did.
const busyGrace = 20 * time.Millisecond

// resetIfStuck resets only's sockets (all, when nil) from outside unless the
// loop reaches the abort it was just posted (reached is set by the posted
// function first thing: from there on the loop closes the sockets itself,
// running no filter code before it has closed them all) or keeps moving
// toward it. It looks every busyGrace: a loop found inside the same call
// out of the engine as at the last look (calls odd and unchanged) is stuck
// before the abort, and its sockets are reset. Any other loop is given
// another look: one that made or ended calls since, and one outside any
// call, which is in epoll_wait (the post woke it) or in the engine's own
// bounded code, and which a loaded machine has not given a CPU yet (with
// 1,500 connections and tests in parallel under -race, an idle loop woken
// by the post was still in epoll_wait 20 ms later in 1 run in 5). A busy
// loop that closes thousands of connections in the abort's turn has
// reached it, and each of them gets its reset. Called only once the post
// succeeded: a loop runs every function posted to it (its shutdown runs
// what is left), so the looks end.
func (l *Loop) resetIfStuck(reached *atomic.Bool, only *conn) {
	seen := l.calls.Load()
	var look func()
	look = func() {
		switch now := l.calls.Load(); {
		case reached.Load():
		case now != seen || now%2 == 0:
			seen = now
			time.AfterFunc(busyGrace, look)
		default:
			l.resetLive(reached, only)
		}
	}
	time.AfterFunc(busyGrace, look)
}

// log logs on the loop thread: the logger is the caller's, a call out.
func (l *Loop) log(level slog.Level, msg string, args ...any) {
	l.callOut()
	defer l.callBack()
	l.logger.Log(context.Background(), level, msg, args...)
}
