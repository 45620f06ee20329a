//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host/internal/sockq"
)

const (
	// pipeCapacity is the size of a Linux pipe (16 pages); the loop never
	// resizes its pipes, so this is also the most a splice moves at once.
	pipeCapacity = 64 << 10
	// bufferSize is the size of a read/write buffer (fallback mode).
	bufferSize = 64 << 10
	// maxFreePipes and maxFreeBuffers bound the loop's free lists.
	maxFreePipes   = 64
	maxFreeBuffers = 64
	// pumpBudget is how many bytes one direction may move before the
	// connection yields the thread to the others for a turn.
	pumpBudget = 512 << 10
	// spliceFlags: never block on the pipe (the sockets are non-blocking).
	spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
	// smallChunk: a splice that moves less than this ends a burst of bulk
	// (see fill).
	smallChunk = 16 << 10
	// defaultDialTimeout replaces a Plan.DialTimeout <= 0.
	defaultDialTimeout = 10 * time.Second
)

// resetLinger makes close send a reset instead of a FIN.
var resetLinger = unix.Linger{Onoff: 1, Linger: 0}

// side names a connection's peer; it is also the index of the direction
// that reads from it.
type side int

const (
	client side = 0
	server side = 1
)

func (s side) String() string {
	if s == client {
		return "client"
	}
	return "server"
}

// connState is where a connection is in its life.
type connState uint8

const (
	dialing connState = iota
	connected
	finished
)

// pipe is a kernel pipe used to splice bytes from one socket to another.
type pipe struct{ r, w int }

func (p pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// endpoint is one of a connection's two sockets, as seen by epoll.
type endpoint struct {
	c        *conn
	fd       int
	side     side
	readable bool // no EAGAIN seen since the last EPOLLIN edge
	writable bool // no EAGAIN seen since the last EPOLLOUT edge
	peerFIN  bool // EPOLLRDHUP seen: the FIN may sit behind the data
	// cleanFIN: an EPOLLRDHUP came without EPOLLERR, so it was the peer's
	// FIN, not a reset (a reset reports both). Once the FIN is in, a read
	// returns 0 after the data, even if a reset follows.
	cleanFIN bool
	// finNext: a read that did not fill its buffer after cleanFIN drained
	// the socket up to the FIN (no byte follows a FIN), so the next read
	// would return 0: it is not made.
	finNext bool
	// urgent: the peer sent urgent (MSG_OOB) data, seen by EPOLLPRI or by
	// a splice that stopped at its mark. A read stops short at the mark
	// with bytes behind it, and a splice returns 0 there: from then on a
	// short read neither means "drained" nor "the FIN is next", and the
	// socket is not spliced. (The urgent byte itself, out of band, is not
	// forwarded.)
	urgent bool
}

func (e *endpoint) onEvent(events uint32) { e.c.onEvent(e, events) }

// readShort records a read that did not fill its buffer (fill, pumpChain).
// It drained the socket: the next byte or the FIN brings an edge. A FIN
// that already arrived brought no new edge, hence peerFIN: then it is the
// next thing to read (finNext, when it was not a reset). After urgent data
// a short read proves neither: the socket stays readable.
func (e *endpoint) readShort() {
	switch {
	case e.urgent:
	case e.cleanFIN:
		e.finNext = true
	case !e.peerFIN:
		e.readable = false
	}
}

// half is one direction of a connection: bytes read from one endpoint and
// not yet written to the other sit in its pipe or buffer, which it holds
// only while pending > 0.
type half struct {
	pipe    pipe
	hasPipe bool
	buf     []byte // non-nil while a buffered chunk is pending
	off     int    // start of the pending bytes in buf
	pending int    // bytes read and not yet written
	eof     bool   // the source sent a FIN
	done    bool   // the FIN has been forwarded
	bulk    bool   // the last read filled a buffer: splice the next ones
}

// conn is one forwarded connection. It is touched only on the loop thread.
type conn struct {
	abortCause atomic.Pointer[error] // Output.Abort's, from any goroutine
	// live is the socket fds the loop has not closed yet, by side (-1:
	// none), under l.fdMu: what an abort resets from outside.
	live [2]int
	// ended is set when the connection finished without an error (read
	// by an abort from outside, under l.fdMu): both directions ended with their FINs, and what is queued in
	// its sockets is the peers' to read. An abort from outside leaves it
	// alone (its reset would drop that), as the loop's own close at the end
	// of the turn does.
	ended      atomic.Bool
	l          *Loop
	ep         [2]endpoint // indexed by side
	half       [2]half     // indexed by the side it reads from
	plan       Plan
	stats      Stats
	state      connState
	queued     bool  // in the loop's run queue
	slot       int   // index in l.conns
	lastActive int64 // loop clock of the last byte moved
	timer      timer // dial deadline, then idle deadline (linger deadline once closing)
	dialAt     int64 // loop clock when the dial began (Stats.ConnectTime)

	// With a Chain (chain_linux.go).
	out     Output
	q       [2]outq // bytes waiting for each socket, indexed by side
	shut    [2]bool // that socket was half-closed (SHUT_WR)
	srcEOF  [2]bool // that socket sent its FIN (filtered directions, and lingering)
	closing bool    // Output.Close was called
	// kick gives the connection a turn (Output.Wake, from any goroutine),
	// made by the first Wake.
	kick      atomic.Pointer[func()]
	lingering bool  // closing: the FINs are out, peers' bytes are dropped
	feeding   int   // the side whose chunk the Chain is handling, or -1
	werr      error // a write failed inside a Chain callback

	clientFailed bool  // the client's socket failed while dialling: not a dial failure
	aborted      bool  // ended by abort: Reason Aborted, whatever the state
	ftimer       timer // the Chain's timer
}

// startConn asks the acceptor for a plan for an accepted fd and, if there is
// one, starts dialling its target.
func (l *Loop) startConn(fd int, peerSA syscall.Sockaddr, a Acceptor) {
	peer := sockaddrToAddrPort(peerSA)
	l.callOut()
	plan := a.Accepted(fd, peer)
	l.callBack()
	if plan == nil {
		return // the caller took the fd
	}
	l.startPlanned(fd, peer, plan)
}

// startPlanned starts forwarding fd by plan: runs its Chain's Open, if any,
// and dials the target.
func (l *Loop) startPlanned(fd int, peer netip.AddrPort, plan *Plan) {
	c := &conn{l: l, plan: *plan, slot: len(l.conns), timer: timer{index: -1}, ftimer: timer{index: -1}, live: [2]int{-1, -1}}
	c.timer.fire = c.onTimer
	c.ep[client] = endpoint{c: c, fd: fd, side: client}
	c.ep[server] = endpoint{c: c, fd: -1, side: server}
	l.addLive(c, client, fd)
	if c.plan.DialTimeout <= 0 {
		c.plan.DialTimeout = defaultDialTimeout
	}
	l.conns = append(l.conns, c)
	l.open.Add(1)
	if err := l.register(fd, socketEvents, &c.ep[client]); err != nil {
		c.finish(fmt.Errorf("client: %w", err))
		return
	}
	// TCP_NODELAY: inherited from the listener (AddListener sets it; a
	// Proxy's listeners have it from before they listen), as for Adopt's.
	if c.plan.Chain != nil && !c.startChain() {
		return
	}
	if err := c.dial(); err != nil {
		c.finish(fmt.Errorf("dial %s: %w", c.plan.Target, err))
	}
}

// dial starts a non-blocking connect to the plan's target; completion is
// reported by EPOLLOUT (see completeDial).
func (c *conn) dial() error {
	if !c.plan.Target.IsValid() {
		return errors.New("invalid target")
	}
	sa, family := addrPortToSockaddr(c.plan.Target)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	c.ep[server].fd = fd
	c.l.addLive(c, server, fd)
	c.dialAt = c.l.now
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return err
	}
	// Registering reports EPOLLOUT at once if the connect already completed.
	if err := c.l.register(fd, socketEvents, &c.ep[server]); err != nil {
		return err
	}
	c.l.timers.set(&c.timer, addSat(c.l.now, int64(c.plan.DialTimeout)))
	return nil
}

// completeDial checks the outcome of the connect once the server socket
// reports events. A connect that failed sets the socket's error, which
// epoll reports as EPOLLERR (with EPOLLHUP once it is closed): only then
// is SO_ERROR read; EPOLLOUT alone is a connect that succeeded, and needs
// no system call to say so.
func (c *conn) completeDial(events uint32) {
	e := &c.ep[server]
	if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		soErr, err := unix.GetsockoptInt(e.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soErr != 0 {
			err = unix.Errno(soErr)
		}
		if err != nil {
			c.finish(fmt.Errorf("dial %s: %w", c.plan.Target, err))
			return
		}
	}
	if !e.writable {
		return // still in progress
	}
	setNoDelay(e.fd)
	c.state = connected
	c.stats.Connected, c.stats.ConnectTime = true, time.Duration(c.l.now-c.dialAt)
	c.lastActive = c.l.now
	if c.plan.IdleTimeout > 0 {
		c.l.timers.set(&c.timer, addSat(c.lastActive, int64(c.plan.IdleTimeout)))
	} else {
		c.l.timers.remove(&c.timer)
	}
	if c.plan.Chain != nil && !c.closing { // closed by a Timer meanwhile: not called again
		if err := c.chainConnected(); err != nil {
			c.finish(err)
			return
		}
	}
	c.run()
}

// onEvent records readiness and moves what can be moved.
func (c *conn) onEvent(e *endpoint, events uint32) {
	if c.state == finished {
		return // a stale event of this epoll batch
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		e.readable = true
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		e.writable = true
	}
	if events&unix.EPOLLPRI != 0 {
		e.urgent = true
	}
	if events&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		e.peerFIN = true
		if events&unix.EPOLLERR == 0 {
			e.cleanFIN = true
		}
	}
	if c.state == dialing {
		// Client bytes stay in the client socket until the dial completes.
		switch {
		case e.side == server:
			c.completeDial(events)
		case events&unix.EPOLLERR != 0:
			c.clientFailed = true // the client's fault, not the dial's
			c.finish(ioError(client, "socket", socketError(e.fd)))
		case c.plan.Chain != nil:
			c.runChain() // what Open wrote toward the client
		}
		return
	}
	c.run()
	if events&unix.EPOLLERR != 0 && c.state != finished {
		// Whatever could be forwarded was; a pending socket error that no
		// read or write surfaced (e.g. a reset on an idle side) ends it now.
		if err := socketError(e.fd); err != nil {
			c.finish(ioError(e.side, "socket", err))
		}
	}
}

// onTimer handles the dial deadline and the idle deadline.
func (c *conn) onTimer() {
	switch c.state {
	case dialing:
		c.finish(&timeoutError{fmt.Sprintf("dial %s: i/o timeout (after %v)", c.plan.Target, c.plan.DialTimeout)})
	case connected:
		if c.lingering {
			c.finish(nil) // the peers did not end within lingerTime
			return
		}
		idle := c.plan.IdleTimeout
		deadline := addSat(c.lastActive, int64(idle))
		if c.l.now < deadline {
			c.l.timers.set(&c.timer, deadline) // bytes moved since it was armed
			return
		}
		// The loop moved nothing for the timeout; the kernel may still be
		// sending what the sockets hold to a peer that takes it (a slow
		// reader of a download): idle counts from the last of that.
		if quiet, ok := sockq.Quiet(c.ep[client].fd, c.ep[server].fd); ok && quiet < idle {
			c.l.timers.set(&c.timer, addSat(c.l.now, int64(idle-quiet)))
			return
		}
		c.finish(&timeoutError{fmt.Sprintf("idle for %v", idle)})
	}
}

// run pumps both directions and finishes the connection when both have
// ended or one failed.
func (c *conn) run() {
	if c.plan.Chain != nil {
		c.runChain()
		return
	}
	if c.state != connected {
		return
	}
	for s := client; s <= server; s++ {
		if err := c.pump(s); err != nil {
			c.finish(err)
			return
		}
	}
	if c.half[client].done && c.half[server].done {
		c.finish(nil)
	}
}

// pump moves bytes read from side from to the other side until a socket
// would block, the budget is used up, or the direction has ended.
func (c *conn) pump(from side) error {
	h := &c.half[from]
	src, dst := &c.ep[from], &c.ep[1-from]
	moved := 0
	for !h.done {
		if h.pending > 0 {
			if !dst.writable {
				return nil // wait for EPOLLOUT; src is not read meanwhile
			}
			n, err := c.l.drain(h, dst.fd)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) {
					dst.writable = false
					return nil
				}
				return ioError(dst.side, "write", err)
			}
			c.wrote(from, n)
			c.lastActive = c.l.now
			continue
		}
		if h.eof {
			// When the other direction is over too (dst's FIN read, its
			// bytes written), the connection finishes in this turn and
			// closing dst sends the FIN: its receive queue is empty, so
			// close(2) ends it as gracefully as shutdown(2) would, and
			// the last half-close costs no system call of its own.
			if !c.half[1-from].done {
				if err := unix.Shutdown(dst.fd, unix.SHUT_WR); err != nil {
					return ioError(dst.side, "shutdown", err)
				}
			}
			h.done = true
			return nil
		}
		if !src.readable {
			return nil
		}
		if moved >= pumpBudget {
			c.l.enqueue(c)
			return nil
		}
		var n int
		var err error
		if !src.finNext { // else the read would return 0: end of stream
			n, err = c.l.fill(h, src)
		}
		switch {
		case err != nil && errors.Is(err, unix.EAGAIN):
			src.readable = false
		case err != nil:
			return ioError(src.side, "read", err)
		case n == 0:
			h.eof = true
			if from == server && !c.clientEnded() {
				c.stats.ServerFINFirst = true
			}
		default:
			moved += n
			c.gotRead(from, n)
		}
	}
	return nil
}

// clientEnded reports whether the client's FIN was read: by pump (a plain
// client direction) or by pumpChain (a filtered one).
func (c *conn) clientEnded() bool { return c.half[client].eof || c.srcEOF[client] }

// abort finishes the connection with Reason Aborted (Loop.Abort,
// Output.Abort): not a failed dial even while dialling.
func (c *conn) abort(cause error) {
	c.aborted = true
	c.finish(cause)
}

// finish ends the connection: with a reset if err != nil. Its fds are
// closed and Done is called at the end of the loop's turn (flush).
func (c *conn) finish(err error) {
	if c.state == finished {
		return
	}
	if cause := c.l.aborting.Load(); cause != nil {
		err, c.aborted = *cause, true // however it noticed (AbortAll)
	} else if cause := c.abortCause.Load(); cause != nil {
		err, c.aborted = *cause, true // however it noticed (Output.Abort)
	}
	switch {
	case err == nil:
		c.stats.Reason = Ended
		c.ended.Store(true)
	case c.aborted:
		c.stats.Reason = Aborted
	case c.state == dialing && !c.clientFailed:
		c.stats.Reason = DialFailed
	case errors.As(err, new(*timeoutError)):
		c.stats.Reason = IdleTimeout
	default:
		c.stats.Reason = Failed
	}
	c.state = finished
	c.stats.Err = err
	l := c.l
	l.timers.remove(&c.timer)
	l.timers.remove(&c.ftimer)
	c.q = [2]outq{}
	if err != nil {
		for s := range c.ep {
			if fd := c.ep[s].fd; fd >= 0 {
				unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &resetLinger)
			}
		}
	}
	for s := range c.half {
		l.release(&c.half[s])
	}
	last := l.conns[len(l.conns)-1]
	l.conns[c.slot] = last
	last.slot = c.slot
	l.conns[len(l.conns)-1] = nil
	l.conns = l.conns[:len(l.conns)-1]
	l.finished = append(l.finished, c)
}

// fill reads once from src into h (which has nothing pending), through a
// pipe if it can get one, else through a buffer. n == 0 with a nil error
// means EOF.
//
// A direction starts with read and write through a buffer: for the small
// chunks of requests and replies that is two system calls per chunk, and a
// short read tells that the socket is drained (with edge-triggered epoll
// and EPOLLRDHUP for a FIN that came with the bytes). Once a read fills the
// whole buffer the direction is carrying bulk and switches to splice, which
// copies nothing through the process; a splice that moves less than
// smallChunk switches it back. (A splice cannot tell a drained socket from
// a full pipe, so it costs an extra call that returns EAGAIN per burst.)
func (l *Loop) fill(h *half, src *endpoint) (int, error) {
	spliceZero := false
	if l.useSplice && h.bulk && !src.urgent && l.takePipe(h) {
		// The pipe is empty, so EAGAIN can only mean "no data in the socket".
		n, err := unix.Splice(src.fd, nil, h.pipe.w, nil, pipeCapacity, spliceFlags)
		for errors.Is(err, unix.EINTR) {
			n, err = unix.Splice(src.fd, nil, h.pipe.w, nil, pipeCapacity, spliceFlags)
		}
		if n > 0 && err == nil {
			if n < smallChunk {
				h.bulk = false
			}
			h.pending = int(n)
			return int(n), nil
		}
		l.release(h)
		if err != nil {
			return 0, err
		}
		// 0: the end of stream, or an urgent mark that arrived after the
		// last event (splice stops at the mark, read(2) goes past it): the
		// read below tells which, once per direction's end.
		spliceZero = true
	}
	if h.buf == nil {
		h.buf = l.takeBuf()
	}
	n, err := unix.Read(src.fd, h.buf)
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Read(src.fd, h.buf)
	}
	if n <= 0 || err != nil {
		l.release(h)
		return 0, err
	}
	if spliceZero {
		src.urgent = true // no more splice, nor finNext, on this socket
	}
	if n == len(h.buf) {
		h.bulk = true
	}
	if n < len(h.buf) {
		src.readShort()
	}
	h.off, h.pending = 0, n
	return n, nil
}

// drain writes some of h's pending bytes to fd and releases the pipe or
// buffer once nothing is pending.
func (l *Loop) drain(h *half, fd int) (int, error) {
	n, err := l.drainOnce(h, fd)
	for errors.Is(err, unix.EINTR) {
		n, err = l.drainOnce(h, fd)
	}
	if err != nil {
		return 0, err
	}
	h.off += n
	h.pending -= n
	if h.pending == 0 {
		l.release(h)
	}
	return n, nil
}

// drainOnce is one splice or write of h's pending bytes to fd.
func (l *Loop) drainOnce(h *half, fd int) (int, error) {
	if h.hasPipe {
		n, err := unix.Splice(h.pipe.r, nil, fd, nil, h.pending, spliceFlags)
		return int(n), err
	}
	return unix.Write(fd, h.buf[h.off:h.off+h.pending])
}

// takePipe gives h a pipe from the free list or a new one.
func (l *Loop) takePipe(h *half) bool {
	if h.hasPipe {
		return true
	}
	if k := len(l.freePipes); k > 0 {
		h.pipe = l.freePipes[k-1]
		l.freePipes = l.freePipes[:k-1]
		h.hasPipe = true
		return true
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return false // fall back to a buffer for this chunk
	}
	h.pipe = pipe{r: fds[0], w: fds[1]}
	h.hasPipe = true
	return true
}

// release returns h's pipe and buffer to the free lists; a pipe that still
// holds bytes is closed instead.
func (l *Loop) release(h *half) {
	if h.hasPipe {
		if h.pending == 0 && len(l.freePipes) < maxFreePipes && !l.stopping {
			l.freePipes = append(l.freePipes, h.pipe)
		} else {
			h.pipe.close()
		}
		h.hasPipe = false
	}
	if h.buf != nil {
		l.putBuf(h.buf)
		h.buf = nil
	}
	h.off, h.pending = 0, 0
}

// timeoutError is the cause of a dial or idle timeout: its text says which
// (as the goroutine engine's does) and it matches os.ErrDeadlineExceeded.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Unwrap() error { return os.ErrDeadlineExceeded }

// socketError returns the pending error of a socket (SO_ERROR), if any.
func socketError(fd int) error {
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}

// ioError names the side and operation of a socket error.
func ioError(s side, op string, err error) error {
	if err == nil {
		err = unix.ECONNRESET
	}
	return &PeerError{Client: s == client, Op: op, Err: err}
}

// setNoDelay disables Nagle's algorithm, as a forwarder must not add delay.
func setNoDelay(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}
