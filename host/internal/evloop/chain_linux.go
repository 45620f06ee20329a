//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A connection with a Chain (Plan.Chain) reads its filtered directions
// through a buffer of the loop's, hands each chunk to the Chain and writes
// what the Chain says, through its Output. Its Output holds one queue per
// destination socket, used only when the socket cannot take the bytes at
// once (backpressure); an idle connection holds no buffer.
//
// Backpressure: a source is not read while a queue holds bytes that its
// chunks produced (outq.feeders), so a destination that stops reading
// stops the sources that feed it, and only those: a server that stops
// reading while it writes a long reply still has its reply read. Bytes
// written outside a chunk's callback (Open, Connected, Timer) are charged
// to the source of their direction: a Chain that delays the server's bytes
// and writes them from its timer stops the server being read while a
// client that does not read has them waiting. What one chunk's output can
// add to a queue is bounded by what the Chain makes of it.

// lingerTime bounds how long a connection closed by its Chain
// (Output.Close) reads, and drops, what its peers still send once its FINs
// are out, so that closing does not reset the bytes still on their way to
// the peers.
const lingerTime = 2 * time.Second

// maxQueued bounds the bytes queued for one socket. Sources stop being
// read while their output waits, so only a Chain that makes much from
// little (or writes from its timer toward a peer that does not read) comes
// near it; past it the connection ends with an error that says so.
const maxQueued = 64 << 20

// outq is the bytes waiting to be written to one socket of a connection.
type outq struct {
	bufs     [][]byte // owned by the queue
	off      int      // bytes of bufs[0] already written
	queued   int      // bytes in bufs, written ones included (at most maxQueued)
	feeders  uint8    // bit s: bytes read from side s produced some of these
	shutWant bool     // CloseWrite was asked: shut the socket once the queue is empty
}

func (q *outq) empty() bool { return len(q.bufs) == 0 }

// Output is a connection's writer for its Chain: its methods, but Abort
// and Wake, may be called only from the Chain's callbacks, on the loop
// thread.
type Output struct {
	c *conn
}

// Write writes b toward side to (0: the client, 1: the server) after what
// is already queued for it: at once as far as the socket takes it, the rest
// copied into the socket's queue. b is not kept. The direction toward to
// must be one of Plan.Filtered: the bytes of the other are forwarded
// without the Chain, and the Chain's would be neither ordered with them
// nor waited for at the end, so writing toward it ends the connection with
// an error that says so.
func (o *Output) Write(to int, b []byte) {
	c := o.c
	if len(b) == 0 || c.state == finished || c.werr != nil || to < 0 || to > 1 {
		return // (after a failure nothing more goes out: the connection resets)
	}
	if !c.plan.Filtered[1-to] {
		c.fail(notFiltered("Write", side(to)))
		return
	}
	q, e := &c.q[to], &c.ep[to]
	if c.shut[to] {
		if c.closing {
			return // Close sent the FIN: a Timer's late bytes are dropped
		}
		c.fail(ioError(side(to), "write", unix.EPIPE))
		return
	}
	if q.empty() && e.writable && (side(to) == client || c.state == connected) {
		n, err := c.writeOut(e, b)
		if err != nil {
			c.fail(err)
			return
		}
		b = b[n:]
	}
	if len(b) > 0 {
		if q.queued+len(b) > maxQueued {
			c.fail(fmt.Errorf("%d bytes queued for the %s, which does not read them: over the limit of %d", q.queued+len(b), side(to), maxQueued))
			return
		}
		q.queued += len(b)
		q.bufs = append(q.bufs, append([]byte(nil), b...))
		if c.feeding >= 0 {
			q.feeders |= 1 << c.feeding
		} else {
			// Written outside a chunk's callback (a Timer sending the
			// bytes it delayed): charged to the source of the direction
			// toward to, which is not read while they wait.
			q.feeders |= 1 << (1 - to)
		}
	}
}

// CloseWrite half-closes side to (shutdown SHUT_WR) once what is queued for
// it is written. As for Write, the direction toward to must be filtered.
func (o *Output) CloseWrite(to int) {
	c := o.c
	if c.state == finished || c.werr != nil || to < 0 || to > 1 {
		return
	}
	if !c.plan.Filtered[1-to] {
		c.fail(notFiltered("CloseWrite", side(to)))
		return
	}
	c.q[to].shutWant = true
}

// notFiltered is the error of an Output call toward the destination of a
// direction the Chain does not filter.
func notFiltered(call string, to side) error {
	return fmt.Errorf("evloop: Chain called Output.%s toward the %s, but the direction toward it is not filtered (Plan.Filtered[%d] is false): its bytes are forwarded without the Chain", call, to, 1-int(to))
}

// Close closes the connection gracefully: once the queued bytes are
// written, both sockets are half-closed, and what the peers still send is
// read and dropped until both end or lingerTime passes. The Chain is not
// called again, but for Timer. A connection closed before its dial is
// never dialled.
func (o *Output) Close() {
	if c := o.c; c.state != finished {
		c.closing = true
	}
}

// Wake gives the connection a turn on the loop, where it reads the sides
// that Plan.Paused no longer pauses: their sockets may hold bytes with no
// readiness edge to come. Unlike the other methods it may be called from
// any goroutine.
func (o *Output) Wake() {
	c := o.c
	k := c.kick.Load()
	if k == nil {
		f := func() {
			if c.state != finished {
				c.l.enqueue(c)
			}
		}
		c.kick.CompareAndSwap(nil, &f) // a racing Wake's may win: either will do
		k = c.kick.Load()
	}
	c.l.post(*k)
}

// SetTimer arms the connection's timer (Chain.Timer) to fire after d,
// replacing the one armed.
func (o *Output) SetTimer(d time.Duration) {
	c := o.c
	if c.state != finished {
		// At least 1ns past this turn's clock: a timer re-armed from its
		// own callback fires on the next turn, not again in this one (the
		// loop would never get back to its events and inbox).
		c.l.timers.set(&c.ftimer, addSat(c.l.now, int64(max(d, 1))))
	}
}

// StopTimer disarms the connection's timer.
func (o *Output) StopTimer() { o.c.l.timers.remove(&o.c.ftimer) }

// Abort ends the connection with a reset, Reason Aborted and cause as
// Stats.Err, from any goroutine and without waiting: it is done by the
// loop as soon as it takes its inbox (at once by Loop.Close); if the loop
// stands still before it for busyGrace (inside a filter call, a guest
// running to its time limit), the connection's sockets are reset from
// outside then (resetFromOutside). A connection already finished is left
// alone.
func (o *Output) Abort(cause error) {
	if cause == nil {
		cause = errAborted
	}
	c := o.c
	c.abortCause.CompareAndSwap(nil, &cause)
	reached := new(atomic.Bool)
	if !c.l.post(func() {
		reached.Store(true)
		if c.state != finished {
			c.abort(cause)
			c.l.flush()
		}
	}) {
		return // the loop has stopped: it ended every connection
	}
	c.l.resetIfStuck(reached, c)
}

// fail records the first error of a write made inside a Chain callback;
// the connection ends with it once the callback has returned.
func (c *conn) fail(err error) {
	if c.werr == nil {
		c.werr = err
	}
}

// chainErr is what a Chain callback that returned err leaves the
// connection with: its own error, else the first failed write it made.
func (c *conn) chainErr(err error) error {
	if err != nil {
		return err
	}
	return c.werr
}

// writeOut writes as much of b to e as the socket takes now.
func (c *conn) writeOut(e *endpoint, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(e.fd, b[done:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			e.writable = false
			break
		}
		if err != nil {
			return done, ioError(e.side, "write", err)
		}
		done += n
	}
	if done > 0 {
		c.wrote(1-e.side, done)
	}
	return done, nil
}

// startChain runs Chain.Open for a connection just accepted; it reports
// whether the connection goes on to dial.
func (c *conn) startChain() bool {
	c.out.c = c
	c.feeding = -1
	c.ftimer = timer{index: -1, fire: c.onChainTimer}
	c.l.callOut()
	err := c.plan.Chain.Open(&c.out)
	c.l.callBack()
	if err := c.chainErr(err); err != nil {
		c.state = connected // the Chain failed, no dial did: Reason Failed
		c.finish(err)
		return false
	}
	if c.closing {
		// Closed before the dial: only the client is left to close.
		c.state = connected
		c.srcEOF[server], c.shut[server] = true, true
		// What Open wrote toward the server goes nowhere: no server
		// will take it, and runClosing would wait for it forever.
		c.q[server] = outq{}
		c.half[server].done, c.half[client].done = true, true
		c.lastActive = c.l.now
		if c.plan.IdleTimeout > 0 {
			// What Open wrote may wait for a client that never reads.
			c.l.timers.set(&c.timer, addSat(c.lastActive, int64(c.plan.IdleTimeout)))
		}
		c.runChain()
		return false
	}
	return true
}

// chainConnected runs Chain.Connected once the target is connected.
func (c *conn) chainConnected() error {
	c.l.callOut()
	err := c.plan.Chain.Connected(&c.out)
	c.l.callBack()
	return c.chainErr(err)
}

// onChainTimer runs Chain.Timer when the connection's timer fires.
func (c *conn) onChainTimer() {
	if c.state == finished {
		return
	}
	c.l.callOut()
	err := c.plan.Chain.Timer(&c.out)
	c.l.callBack()
	if err := c.chainErr(err); err != nil {
		c.finish(err)
		return
	}
	c.runChain()
}

// runChain moves what can be moved for a connection with a Chain: the
// queues first, then new chunks through the Chain, until nothing moves;
// then it finishes the connection if both directions have ended.
func (c *conn) runChain() {
	if c.state == finished {
		return
	}
	if c.state == dialing {
		// Only the client's queue can move (Open's writes).
		if err := c.flushQueue(client); err != nil {
			c.finish(err)
		}
		return
	}
	if err := c.flushQueues(); err != nil {
		c.finish(err)
		return
	}
	if c.closing {
		c.runClosing()
		return
	}
	for s := client; s <= server; s++ {
		var err error
		if c.plan.Filtered[s] {
			err = c.pumpChain(s)
		} else {
			err = c.pump(s)
		}
		if err = c.chainErr(err); err != nil {
			c.finish(err)
			return
		}
		if c.closing {
			c.runChain() // the Chain closed the connection: drain, then linger
			return
		}
	}
	// What the chunks produced may have gone out already: flush again so
	// that a half-close asked for after the bytes is done now.
	if err := c.flushQueues(); err != nil {
		c.finish(err)
		return
	}
	if c.chainDone() {
		c.finish(nil)
	}
}

// chainDone reports whether both directions have ended: a filtered one
// when its source sent a FIN and its destination was half-closed with
// nothing queued, a plain one when its FIN was forwarded.
func (c *conn) chainDone() bool {
	for s := client; s <= server; s++ {
		if !c.plan.Filtered[s] {
			if !c.half[s].done {
				return false
			}
			continue
		}
		if !c.srcEOF[s] || !c.shut[1-s] || !c.q[1-s].empty() {
			return false
		}
	}
	return true
}

// pumpChain reads chunks from side from and hands them to the Chain until
// the source would block, the budget is used, the source ended, or the
// queues it feeds hold bytes.
func (c *conn) pumpChain(from side) error {
	src := &c.ep[from]
	moved := 0
	for !c.srcEOF[from] && src.readable && !c.closing && !c.paused(from) {
		if (c.q[0].feeders|c.q[1].feeders)&(1<<from) != 0 {
			return nil // backpressure: what it produced is not written yet
		}
		if moved >= pumpBudget {
			c.l.enqueue(c)
			return nil
		}
		buf := c.l.takeBuf()
		var n int
		var err error
		if !src.finNext { // else the read would return 0: end of stream
			n, err = unix.Read(src.fd, buf)
			for errors.Is(err, unix.EINTR) {
				n, err = unix.Read(src.fd, buf)
			}
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			src.readable = false
			c.l.putBuf(buf)
			return nil
		case err != nil:
			c.l.putBuf(buf)
			return ioError(from, "read", err)
		case n == 0:
			c.l.putBuf(buf)
			c.srcEOF[from] = true
			if from == server && !c.clientEnded() {
				c.stats.ServerFINFirst = true
			}
			c.feeding = int(from)
			c.l.callOut()
			err = c.plan.Chain.End(int(from), &c.out)
			c.l.callBack()
			c.feeding = -1
			return err
		}
		c.gotRead(from, n)
		moved += n
		if n < len(buf) {
			src.readShort()
		}
		c.feeding = int(from)
		c.l.callOut()
		err = c.plan.Chain.Data(int(from), buf[:n], &c.out)
		c.l.callBack()
		c.feeding = -1
		c.l.putBuf(buf)
		if err = c.chainErr(err); err != nil {
			return err
		}
	}
	return nil
}

// paused reports whether Plan.Paused stops the reads of side from.
func (c *conn) paused(from side) bool {
	return c.plan.Paused != nil && c.plan.Paused[from].Load() != 0
}

// flushQueues flushes the queues of both sockets.
func (c *conn) flushQueues() error {
	for s := client; s <= server; s++ {
		if err := c.flushQueue(s); err != nil {
			return err
		}
	}
	return nil
}

// flushQueue writes what is queued for side to as far as the socket takes
// it, then half-closes it if that was asked and nothing is left.
func (c *conn) flushQueue(to side) error {
	q, e := &c.q[to], &c.ep[to]
	if e.fd < 0 {
		return nil
	}
	for !q.empty() {
		if !e.writable {
			return nil
		}
		b := q.bufs[0][q.off:]
		n, err := c.writeOut(e, b)
		if err != nil {
			return err
		}
		if n < len(b) {
			q.off += n
			return nil
		}
		q.queued -= len(q.bufs[0])
		q.bufs[0] = nil
		q.bufs = q.bufs[1:]
		q.off = 0
		c.lastActive = c.l.now
	}
	q.bufs = nil
	q.feeders = 0
	if q.shutWant && !c.shut[to] {
		c.shut[to] = true
		if !c.closing && c.chainDone() {
			// The last half-close: runChain finishes the connection in
			// this turn, and closing the socket sends the same FIN, its
			// own stream having ended (nothing unread in it), as on the
			// plain path (pump); one system call less.
			return nil
		}
		if err := unix.Shutdown(e.fd, unix.SHUT_WR); err != nil {
			return ioError(to, "shutdown", err)
		}
	}
	return nil
}

// runClosing moves a connection closed by its Chain toward its end: the
// queues are written (runChain did what it could), then both sockets are
// half-closed and what the peers send is dropped until both have ended or
// lingerTime has passed.
func (c *conn) runClosing() {
	if !c.lingering {
		for s := client; s <= server; s++ {
			// A plain direction's bytes read before the close go out too.
			h, dst := &c.half[1-s], &c.ep[s]
			for h.pending > 0 && dst.writable {
				n, err := c.l.drain(h, dst.fd)
				if errors.Is(err, unix.EAGAIN) {
					dst.writable = false
					break
				}
				if err != nil {
					c.finish(ioError(s, "write", err))
					return
				}
				c.wrote(1-s, n)
			}
			if !c.q[s].empty() || h.pending > 0 {
				return // wait for EPOLLOUT
			}
		}
		c.lingering = true
		for s := client; s <= server; s++ {
			c.l.release(&c.half[s])
			if c.ep[s].fd >= 0 && !c.shut[s] {
				c.shut[s] = true
				unix.Shutdown(c.ep[s].fd, unix.SHUT_WR) // a peer already gone is no error here
			}
		}
		c.l.timers.set(&c.timer, c.l.now+int64(lingerTime))
	}
	dropped := 0
	for s := client; s <= server; s++ {
		e := &c.ep[s]
		for e.fd >= 0 && !c.srcEOF[s] && e.readable {
			if dropped >= pumpBudget {
				c.l.enqueue(c) // a peer that never runs dry must not hold the loop
				return
			}
			buf := c.l.takeBuf()
			n, err := unix.Read(e.fd, buf)
			c.l.putBuf(buf)
			dropped += max(n, 0)
			switch {
			case errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.EAGAIN):
				e.readable = false
			case err != nil || n == 0:
				c.srcEOF[s] = true // dropped: a reset now loses nothing of ours
			}
		}
	}
	if (c.srcEOF[client] || c.ep[client].fd < 0) && (c.srcEOF[server] || c.ep[server].fd < 0) {
		c.finish(nil)
	}
}

// takeBuf returns a read buffer from the free list or a new one.
func (l *Loop) takeBuf() []byte {
	if k := len(l.freeBufs); k > 0 {
		b := l.freeBufs[k-1]
		l.freeBufs[k-1] = nil
		l.freeBufs = l.freeBufs[:k-1]
		return b
	}
	return make([]byte, bufferSize)
}

// putBuf gives a read buffer back to the free list.
func (l *Loop) putBuf(b []byte) {
	if len(l.freeBufs) < maxFreeBuffers && !l.stopping {
		l.freeBufs = append(l.freeBufs, b)
	}
}

// gotRead counts n bytes read from side from, which is activity.
func (c *conn) gotRead(from side, n int) {
	c.stats.Read[from] += int64(n)
	if c.plan.Read != nil {
		c.plan.Read[from].Add(int64(n))
	}
	c.lastActive = c.l.now
}

// wrote counts n bytes written in direction dir (0: to the server).
func (c *conn) wrote(dir side, n int) {
	c.stats.Written[dir] += int64(n)
	if c.plan.Written != nil {
		c.plan.Written[dir].Add(int64(n))
	}
}

// Adopt makes the loop forward fd, a connected, non-blocking, close-on-exec
// socket accepted elsewhere (another loop's listener), by plan; peer is its
// address. Like the sockets a Loop's listener accepts, fd is expected to
// have TCP_NODELAY already (a Loop's listeners have it, and their sockets
// inherit it); the loop does not set it. It does not wait. The loop owns fd from here on; false means the
// loop has stopped, and the caller still owns fd (plan.Done is not called).
func (l *Loop) Adopt(fd int, peer netip.AddrPort, plan *Plan) bool {
	return l.post(func() {
		if l.stopping {
			// Posted just before Close: the loop owned it, so it ends it.
			unix.Close(fd)
			if plan.Done != nil {
				plan.Done(Stats{Reason: Aborted, Err: ErrClosed})
			}
			return
		}
		l.startPlanned(fd, peer, plan)
	})
}

// AbortAll is Abort for every connection of the loop, finished with cause
// as soon as the loop takes its inbox; if the loop stands still before
// that for busyGrace, their sockets are reset from outside then
// (resetFromOutside). Safe from any goroutine, loop callbacks included.
func (l *Loop) AbortAll(cause error) {
	if cause == nil {
		cause = errAborted
	}
	l.aborting.CompareAndSwap(nil, &cause)
	reached := new(atomic.Bool)
	if !l.post(func() { reached.Store(true); l.abortNow(cause) }) {
		return // the loop has stopped: it ended every connection
	}
	l.resetIfStuck(reached, nil)
}
