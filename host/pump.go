package host

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// pump forwards one direction until its source ends or the connection
// aborts, or until a sweep parks the direction (park.go) or moves it to a
// fresh goroutine.
func (c *conn) pump(dir Direction) {
	src, dst := c.source(dir), c.destination(dir)
	var err error
	var handOff bool
	if len(c.rs.chains[dir]) == 0 && c.rs.IdleTimeout == 0 && !c.usesTLS() {
		if dir == ClientToServer && c.prefix != nil {
			err = c.writePrefix(dst)
		}
		if err == nil {
			handOff, err = c.splice(dir, src, dst)
		}
	} else {
		handOff, err = c.filtered(dir)
		if !handOff {
			c.rd[dir].release()
		}
	}
	if handOff {
		// An idle pump parks its source (no goroutine at all), or moves to
		// a fresh goroutine; either allocates, but only when a pump idles.
		if !c.park(dir) {
			go c.pump(dir)
		}
		return
	}
	if c.td.closing.Load() {
		// A filter closed the connection: read what the peer still sends
		// and drop it, so that closing the socket does not reset it and
		// discard the bytes still queued toward the peer.
		io.Copy(io.Discard, src)
	} else if err != nil {
		c.setReason(classify(err))
		c.abort(err)
	}
	c.dlMu.Lock()
	c.ended[dir] = true
	asleep := c.asleepLocked()
	c.dlMu.Unlock()
	if c.pumps.Add(-1) == 0 {
		c.finish(nil)
	} else if asleep {
		c.leaveSweeps() // the other pump is parked
	}
}

// filtered is the path of a direction with filters (or an idle timeout): read
// a chunk, run the chain, write what it produced, again. It returns handOff
// when a sweep poked it: pump parks the direction or moves it to a fresh
// goroutine.
func (c *conn) filtered(dir Direction) (handOff bool, err error) {
	for {
		st, err := c.step(dir)
		switch {
		case err != nil:
			return false, err
		case st == stepEnd:
			if done := c.ch.endDeferred(dir); done != nil {
				// A filter holds the half-close (Stream.DeferEnd): the
				// connection lives until it is done or torn down, or
				// until the source, which nobody reads any more, resets.
				return false, c.awaitDeferred(dir, done)
			}
			return false, nil
		case st == stepMove:
			return true, nil
		}
	}
}

// awaitDeferred waits until the half-close a filter deferred is done, the
// connection is torn down, or dir's source fails (awaitSource).
func (c *conn) awaitDeferred(dir Direction, done chan struct{}) error {
	return c.awaitSource(dir, done, nil)
}

// awaitResume waits until a filter resumes dir's reads (Stream.ResumeRead),
// the connection is torn down, or dir's source fails (awaitSource).
// On a late-dial route it also ends once a timer chose the target
// (SetTarget wakes it): awaitTarget, which reads the client through step,
// must dial then, not wait for a resume that may come only from the server.
func (c *conn) awaitResume(dir Direction) error {
	return c.awaitSource(dir, c.pauseWake[dir], func() bool { return c.paused[dir].Load() == 0 || c.targetToDial(dir) })
}

// targetToDial reports whether dir is the client's direction of a late-dial
// connection whose target was chosen and is not dialled yet.
func (c *conn) targetToDial(dir Direction) bool {
	return dir == ClientToServer && c.rs.LateDial && c.target.Load() != nil && c.server.Load() == nil
}

// awaitSource waits, while nobody reads dir's source, until wake delivers
// and over (nil: always) says the wait is over, the connection is torn
// down, or the source fails (a peer that resets: nothing else would
// notice, as nobody reads it). The Parker watches the source for that
// where it can; elsewhere (no Parker off Linux, a TLS source, the portable
// read) the source is looked at every deferredPoll, as the Parker would
// see it (socketState).
func (c *conn) awaitSource(dir Direction, wake <-chan struct{}, over func() bool) error {
	failed, stop := c.watchErrors(dir)
	defer stop()
	var poll <-chan time.Time
	if failed == nil && pollsSockets {
		t := time.NewTicker(deferredPoll)
		defer t.Stop()
		poll = t.C
	}
	for {
		watched := false
		select {
		case <-wake:
			if over == nil || over() {
				return nil
			}
			continue
		case <-c.td.closed:
			return nil
		case <-poll:
		case <-failed:
			watched = true // the Parker's watch fires once
		}
		hup, err := c.sourceState(dir)
		select {
		case <-c.td.closed:
			return nil // torn down meanwhile: whatever the socket says is teardown's
		default:
		}
		if err != nil {
			return &peerError{"read", dir, err}
		}
		if hup || watched {
			// Hung up both ways without an error: a clean end, so only the
			// filter or teardown ends the connection.
			failed, poll = nil, nil
		}
	}
}

// deferredPoll is how often awaitSource (a deferred half-close, a paused
// source) looks at the source when nothing watches the socket for it.
const deferredPoll = 250 * time.Millisecond

// sourceState is socketState of dir's source socket.
func (c *conn) sourceState(dir Direction) (hup bool, err error) {
	rc := c.rd[dir].rc
	if rc == nil {
		src := c.source(dir)
		if src == nil {
			return false, nil
		}
		if rc, err = src.SyscallConn(); err != nil {
			return false, nil // teardown ends the wait
		}
	}
	return socketState(rc)
}

// step is what one read of a filtered direction led to.
type step uint8

const (
	stepMore step = iota // a chunk went through the chain
	stepEnd              // the source ended (its End ran), or the connection is closing
	stepMove             // a poke woke the read: park or move to a fresh goroutine (or look again)
)

// step waits for the next chunk of dir's source and runs it through the
// chain, outside any socket callback.
func (c *conn) step(dir Direction) (step, error) {
	r := &c.rd[dir]
	if dir == ClientToServer && c.prefix != nil {
		b := c.prefix
		c.prefix = nil
		c.read[dir].Add(int64(len(b)))
		return stepMore, c.ch.data(dir, b)
	}
	if c.paused[dir].Load() != 0 {
		// A filter paused the reads (Stream.PauseRead): the source's
		// socket fills and TCP stops its sender. A paused direction is
		// an idle one: it holds no chunk buffer meanwhile.
		r.release()
		if err := c.awaitResume(dir); err != nil {
			return stepEnd, err
		}
		if c.td.closing.Load() {
			return stepEnd, nil // pump drains the rest
		}
		select {
		case <-c.td.closed:
			// Aborted: the pause is not over, and the source is not
			// read (teardown closes it meanwhile, as a read would find).
			return stepEnd, &peerError{"read", dir, net.ErrClosed}
		default:
		}
		if c.paused[dir].Load() != 0 && c.targetToDial(dir) {
			// Still paused, but a timer chose the target: awaitTarget
			// dials; the pump that reads after the dial waits for the
			// resume.
			return stepMove, nil
		}
	}
	if tc := c.secureSource(dir); tc != nil {
		return c.stepTLS(dir, tc)
	}
	src := c.source(dir)
	r.n, r.err = 0, nil
	err := r.read(src)
	switch {
	case c.td.closing.Load():
		return stepEnd, nil // a filter closed the connection: pump drains the rest
	case err == nil && r.err == nil:
		b := (*r.buf)[:r.n]
		c.read[dir].Add(int64(len(b)))
		if c.rs.IdleTimeout > 0 {
			c.lastIO.Store(time.Now().UnixNano())
		}
		return stepMore, c.ch.data(dir, b)
	case r.err == io.EOF:
		r.release()
		c.sawEOF(dir)
		return stepEnd, c.ch.end(dir)
	case r.err != nil:
		return stepEnd, &peerError{"read", dir, r.err}
	case errors.Is(err, os.ErrDeadlineExceeded) && c.unpoke(dir, src):
		r.release() // the pump parks or moves: it holds no buffer meanwhile
		return stepMove, nil
	}
	return stepEnd, &peerError{"read", dir, err}
}

// reader reads a filtered direction's source, one chunk per read (see
// read: rawread_unix.go, rawread_other.go).
type reader struct {
	rc  syscall.RawConn       // src's, once the first read asked for it (Unix)
	fn  func(fd uintptr) bool // readFD, made once (Unix)
	buf *[]byte
	n   int   // bytes of the last read
	err error // the last read failed, or io.EOF
}

func (r *reader) release() {
	if r.buf != nil {
		putBuf(r.buf)
		r.buf = nil
	}
}

// aLongTimeAgo is the read deadline of a poke: a read fails at once.
var aLongTimeAgo = time.Unix(1, 0)

// sweep pokes the pumps that have been idle since the previous sweep, so
// that they park (or, where they cannot, move to fresh goroutines if they
// have forwarded bytes). Only the sweeper calls it.
// With parks, the Proxy's Parker runs: any idle pump that can park is poked.
func (c *conn) sweep(parks bool) {
	if c.pumps.Load() == 0 {
		return // dialling, or ended
	}
	for d := ClientToServer; d <= ServerToClient; d++ {
		if !spliceMovable && len(c.rs.chains[d]) == 0 && c.rs.IdleTimeout == 0 {
			continue
		}
		b := c.read[d].Load()
		// Idle for a whole sweep: park it (see park.go) or, where it
		// cannot park, move it unless its goroutine is still small.
		if b == c.seen[d] && (parks && c.parkable(d) || b != c.born[d].Load()) {
			c.poke(d)
		}
		c.seen[d] = b
	}
}

// poke makes dir's pending read fail with a deadline error, which the pump
// takes as the signal to move (see unpoke).
func (c *conn) poke(dir Direction) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	src := c.source(dir)
	if c.td.closing.Load() || c.poked[dir] || c.parkedOn[dir] != nil || src == nil {
		return
	}
	c.poked[dir] = true
	src.SetReadDeadline(aLongTimeAgo)
}

// unpoke clears a poke's deadline and reports whether there was one: a
// deadline error without a poke is the linger deadline of closeGracefully.
func (c *conn) unpoke(dir Direction, src *net.TCPConn) bool {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if !c.poked[dir] || c.td.closing.Load() {
		return false
	}
	c.born[dir].Store(c.read[dir].Load()) // before poked is cleared: no second poke for this move
	c.poked[dir] = false
	src.SetReadDeadline(time.Time{})
	return true
}
