package host

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"
	"unsafe"
)

// chunkSize is the size of the buffers the filtered path reads into.
const chunkSize = 64 << 10

// bufPool holds chunk-sized buffers as *[]byte so Get and Put allocate nothing.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 4*chunkSize {
		return // a filter made a huge output once; let the GC have it
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// chain is the filter state of one connection: its filters, what they
// queued toward each destination, their timers, and a late-dial route's
// chosen target. Everything here is guarded by mu, and every filter
// callback runs with mu held (a Filter needs no lock of its own). No socket
// is touched under mu: a call into the chain returns the [writes] it
// produced, taken under mu, and the caller performs them after unlocking.
type chain struct {
	c  *conn
	mu sync.Mutex

	filters []Filter
	streams []Stream
	pend    [2]*[]byte // bytes waiting to be written toward each destination
	// lent is a chunk queued toward a destination without a copy: a part
	// of the chunk data is delivering (lending), which data writes before
	// its pump reads into that buffer again. A direction has lent bytes or
	// pend bytes, never both: what is queued after lent bytes copies them
	// into pend first, keeping the order.
	lent      [2][]byte
	lending   []byte  // the chunk data is delivering, or nil
	noLend    int     // Stream.Send calls in progress: what reaches a destination meanwhile is copied
	wclosed   [2]bool // no more sends toward that destination
	cwPending [2]bool // CloseWrite to perform with the next writes
	closeReq  bool
	depth     int
	ended     [2]bool          // End already delivered for that direction
	dialled   bool             // the server socket exists: writes toward it may go
	timers    []linkTimer      // per link, made on the first SetTimer
	done      bool             // close ran: the filters are gone
	firing    bool             // a Timer callback is running
	tags      []Tag            // set by the filters (Stream.SetTag); in the close log line
	ending    [2]bool          // the End callbacks of that direction are running
	deferred  [2]chan struct{} // a filter deferred the half-close (Stream.DeferEnd); closed once done
	openErr   error            // the first Opened that failed (chain.openLocked)
}

// linkTimer is a filter's one timer. due is when it should fire, as time
// since the connection started, or 0 when disarmed: a fire that finds due
// later than now is the stale fire of a timer re-armed since.
type linkTimer struct {
	t   *time.Timer
	due time.Duration
}

// writes is what one call into the chain queued for the sockets: taken under
// chain.mu together with the destinations' write locks (so bytes keep the
// order the filters produced them in), performed by do after chain.mu is
// released. A writes must be done exactly once.
type writes struct {
	c        *conn
	bufs     [2]*[]byte
	lent     [2][]byte // bytes of the chunk being delivered (chain.lent)
	cw       [2]bool
	locked   [2]bool
	close    bool
	deferred [2]chan struct{} // closed once the half-close is done (Stream.DeferEnd)
}

// bytes returns what w writes toward d's destination: copied or lent.
func (w *writes) bytes(d Direction) []byte {
	if w.bufs[d] != nil {
		return *w.bufs[d]
	}
	return w.lent[d]
}

// takeLocked moves what is pending into a writes. Called with mu held.
// Nothing toward the server is taken before it is dialled.
func (ch *chain) takeLocked() writes {
	w := writes{c: ch.c, close: ch.closeReq}
	for d := ClientToServer; d <= ServerToClient; d++ {
		if d == ClientToServer && !ch.dialled {
			continue
		}
		if ch.pend[d] != nil || ch.lent[d] != nil || ch.cwPending[d] {
			ch.c.wmu[d].Lock()
			w.locked[d] = true
			w.bufs[d], ch.pend[d] = ch.pend[d], nil
			w.lent[d], ch.lent[d] = ch.lent[d], nil
			w.cw[d], ch.cwPending[d] = ch.cwPending[d], false
			if w.cw[d] {
				w.deferred[d], ch.deferred[d] = ch.deferred[d], nil
			}
		}
	}
	return w
}

// do writes, half-closes and closes as queued. The writes may wait for a
// slow peer (that is the backpressure); teardown wakes them by closing the
// socket.
func (w *writes) do() error {
	c := w.c
	var err error
	for d := ClientToServer; d <= ServerToClient; d++ {
		if !w.locked[d] {
			continue
		}
		if w.bufs[d] != nil || w.lent[d] != nil {
			if err == nil {
				n, werr := c.writeTo(d, w.bytes(d))
				c.written[d].Add(int64(n))
				if n > 0 && c.rs.IdleTimeout > 0 {
					// Bytes a filter sends (a paced or delayed run from
					// its timer) are activity too, as the event loop and
					// Linux's socket check already count them.
					c.lastIO.Store(time.Now().UnixNano())
				}
				if werr != nil {
					err = &peerError{"write", d, werr}
				}
			}
			if w.bufs[d] != nil {
				putBuf(w.bufs[d])
			}
		}
		if w.cw[d] && err == nil {
			if cerr := c.closeWriteTo(d); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = fmt.Errorf("half-close %s: %w", d, cerr)
			}
		}
		if w.deferred[d] != nil {
			close(w.deferred[d]) // the pump waiting in endDeferred goes on
		}
		c.wmu[d].Unlock()
	}
	if err == nil && w.close {
		c.closeGracefully()
	}
	return err
}

// open makes the filters and runs their Opened callbacks.
func (ch *chain) open() (writes, error) {
	c := ch.c
	n := len(c.rs.Chain)
	if n == 0 {
		return writes{c: c}, nil
	}
	filters := make([]Filter, 0, n)
	streams := make([]Stream, n)
	for i, l := range c.rs.Chain {
		f, err := c.callOpen(l.Hook)
		if err != nil {
			ch.mu.Lock()
			ch.filters = filters
			ch.mu.Unlock()
			return writes{}, fmt.Errorf("%s: %w", l.Name, err)
		}
		filters = append(filters, f)
		streams[i] = Stream{c: c, idx: i}
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.filters, ch.streams = filters, streams
	for i := range ch.filters {
		if err := ch.openLocked(i); err != nil {
			return writes{}, err
		}
		if ch.openErr != nil {
			// A link opened early failed, and the link whose send opened
			// it went on regardless: the connection is refused all the
			// same, and no link after it opens.
			return writes{}, ch.openErr
		}
		if ch.closeReq {
			// The link closed the connection (a rate limit turning a
			// client away with a reply): as after a refusal, the links
			// after it are told Closed and nothing else, rather than
			// opened (a guest call each) for a connection that is over.
			break
		}
	}
	return ch.takeLocked(), nil
}

// openLocked runs link i's Opened callback, once: in chain order, or
// earlier when bytes reach link i from another link's Opened, so that a
// filter sees Opened before its first Data.
func (ch *chain) openLocked(i int) error {
	s := &ch.streams[i]
	if s.opened {
		return nil
	}
	s.opened = true
	if err := ch.c.callOpened(ch.filters[i], s); err != nil {
		err = fmt.Errorf("%s: %w", ch.c.rs.Chain[i].Name, err)
		if ch.openErr == nil {
			ch.openErr = err
		}
		return err
	}
	return nil
}

// data runs a chunk read from dir's source through the chain and writes
// what it produced. What the filters pass on of b itself is written from b,
// not copied (see chain.lent): b stays the caller's until data returns.
func (ch *chain) data(dir Direction, b []byte) error {
	w, err := ch.run(dir, b)
	if err != nil {
		return err
	}
	return w.do()
}

// run runs a chunk read from dir's source through the chain and returns
// the writes it produced, which may refer to b (see chain.lent).
func (ch *chain) run(dir Direction, b []byte) (writes, error) {
	ch.mu.Lock()
	if ch.closeReq {
		// A filter closed the connection: what either pump read since is
		// dropped, as the pumps drain the rest once the close is under
		// way. Forwarded, a chunk the other pump had just read would go
		// after the goodbye the filter sent with its Close.
		ch.mu.Unlock()
		return writes{}, nil
	}
	ch.lending = b
	var err error
	if len(ch.c.rs.chains[dir]) == 0 {
		err = ch.queueLocked(dir, b) // an idle-timeout route: no filter
	} else {
		err = ch.deliverLocked(dir, 0, b)
	}
	ch.lending = nil
	if err != nil {
		ch.unlendLocked()
		ch.mu.Unlock()
		return writes{}, err
	}
	w := ch.takeLocked()
	ch.unlendLocked() // what take left (nothing goes to a server not dialled yet)
	ch.mu.Unlock()
	return w, nil
}

// unlendLocked copies lent bytes that were not taken into pend: b's buffer
// is about to be read into again.
func (ch *chain) unlendLocked() {
	for d := range ch.lent {
		if ch.lent[d] != nil {
			pb := getBuf()
			*pb = append(*pb, ch.lent[d]...)
			ch.pend[d], ch.lent[d] = pb, nil
		}
	}
}

// within reports whether b is a part of in's bytes.
func within(b, in []byte) bool {
	if len(b) == 0 || len(in) == 0 {
		return false
	}
	p, s := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	return p >= s && p+uintptr(len(b)) <= s+uintptr(len(in))
}

// end runs the End callbacks of dir (its source half-closed) and passes the
// half-close on.
func (ch *chain) end(dir Direction) error {
	w, err := ch.runEnd(dir)
	if err != nil {
		return err
	}
	return w.do()
}

// runEnd runs the End callbacks of dir and returns the writes they produced.
func (ch *chain) runEnd(dir Direction) (writes, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err := ch.endLocked(dir); err != nil {
		return writes{}, err
	}
	return ch.takeLocked(), nil
}

// nowDialled tells the DialFilters that the target is connected, lets the
// writes toward the server go and returns those the filters queued before
// the dial (and while told). The error is the first DialFilter's.
func (ch *chain) nowDialled() (writes, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.openErr == nil && !ch.done {
		for i, f := range ch.filters {
			df, ok := f.(DialFilter)
			if !ok || !ch.streams[i].opened {
				continue
			}
			if err := ch.c.callDialled(df, &ch.streams[i]); err != nil {
				return writes{}, fmt.Errorf("%s: %w", ch.c.rs.Chain[i].Name, err)
			}
		}
	}
	ch.dialled = true
	return ch.takeLocked(), nil
}

// chosenTarget returns the target a filter chose, or "".
func (ch *chain) chosenTarget() string {
	if t := ch.c.target.Load(); t != nil {
		return *t
	}
	return ""
}

// deliverLocked hands b to the filter at position pos of dir's chain, or
// queues it for the destination past the chain's end.
func (ch *chain) deliverLocked(dir Direction, pos int, b []byte) error {
	c := ch.c
	order := c.rs.chains[dir]
	if len(order) == 0 {
		return ErrNotAttached
	}
	if ch.done {
		// From a Closed callback, or a Stream kept past its callback (not
		// allowed): the filters are gone.
		return ErrWriteClosed
	}
	if ch.openErr != nil {
		return ch.openErr // a link failed to open: nothing more is delivered
	}
	if pos >= len(order) {
		return ch.queueLocked(dir, b)
	}
	if len(b) == 0 {
		return nil
	}
	if ch.depth >= 64 {
		return ErrSendDepth
	}
	i := order[pos]
	if !ch.streams[i].opened { // only while the chain opens
		if err := ch.openLocked(i); err != nil {
			return err
		}
	}
	ch.depth++
	err := c.callData(ch.filters[i], dir, b, &ch.streams[i])
	ch.depth--
	if err != nil {
		if err != ErrSendDepth && errors.Is(err, ErrSendDepth) {
			// Named once, by the link that hit the bound: the 64 levels
			// above it would each add their name.
			return err
		}
		return fmt.Errorf("%s (%s): %w", c.rs.Chain[i].Name, dir, err)
	}
	return nil
}

// queueLocked queues b for dir's destination.
func (ch *chain) queueLocked(dir Direction, b []byte) error {
	if ch.wclosed[dir] {
		return ErrWriteClosed
	}
	if len(b) == 0 {
		return nil
	}
	pb := ch.pend[dir]
	if pb == nil && ch.lent[dir] == nil && ch.noLend == 0 && within(b, ch.lending) && (dir == ServerToClient || ch.dialled) {
		ch.lent[dir] = b // written from the chunk itself: no copy
		return nil
	}
	if pb == nil {
		pb = getBuf()
		ch.pend[dir] = pb
		if l := ch.lent[dir]; l != nil {
			*pb = append(*pb, l...) // first what was lent, in order
			ch.lent[dir] = nil
		}
	}
	if dir == ClientToServer && !ch.dialled && ch.c.rs.LateDial {
		if limit := ch.c.rs.holdLimit(); len(*pb)+len(b) > limit {
			return fmt.Errorf("late dial: %d bytes held for a target not chosen yet, over the limit of %d", len(*pb)+len(b), limit)
		}
	}
	*pb = append(*pb, b...)
	return nil
}

// endLocked runs the End callbacks of dir's chain and schedules the
// half-close of its destination.
func (ch *chain) endLocked(dir Direction) error {
	if ch.ended[dir] {
		return nil
	}
	ch.ended[dir] = true
	c := ch.c
	ch.ending[dir] = true
	for _, i := range c.rs.chains[dir] {
		if err := ch.c.callEnd(ch.filters[i], dir, &ch.streams[i]); err != nil {
			ch.ending[dir] = false
			return fmt.Errorf("%s (%s end): %w", c.rs.Chain[i].Name, dir, err)
		}
	}
	ch.ending[dir] = false
	if !ch.wclosed[dir] && ch.deferred[dir] == nil {
		ch.wclosed[dir] = true
		ch.cwPending[dir] = true
	}
	return nil
}

// endDeferred returns the channel closed once a half-close a filter
// deferred (Stream.DeferEnd) is done, or nil.
func (ch *chain) endDeferred(dir Direction) chan struct{} {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.deferred[dir]
}

// setTimerLocked arms link idx's timer to fire after d.
func (ch *chain) setTimerLocked(idx int, d time.Duration) {
	if ch.timers == nil {
		ch.timers = make([]linkTimer, len(ch.filters))
	}
	lt := &ch.timers[idx]
	// Saturated: a timer at the end of time must not wrap to one that is
	// due at once.
	lt.due = max(time.Since(ch.c.start), 1)
	if d > math.MaxInt64-lt.due {
		lt.due = math.MaxInt64
	} else {
		lt.due += d
	}
	if ch.c.il.c != nil {
		ch.c.il.armLocked() // the route's loop runs the timers
		return
	}
	if lt.t == nil {
		lt.t = time.AfterFunc(d, func() { ch.fire(idx) })
	} else {
		lt.t.Reset(d)
	}
}

// fire runs link idx's Timer callback when its timer is due.
func (ch *chain) fire(idx int) {
	ch.mu.Lock()
	if ch.done || ch.openErr != nil {
		ch.mu.Unlock()
		return // (a link failed to open: the connection is being refused)
	}
	lt := &ch.timers[idx]
	if lt.due == 0 || time.Since(ch.c.start) < lt.due {
		ch.mu.Unlock()
		return // disarmed, or re-armed for later: this fire is stale
	}
	lt.due = 0
	c := ch.c
	ch.firing = true
	err := c.callTimer(ch.filters[idx].(TimerFilter), &ch.streams[idx])
	ch.firing = false
	if err != nil {
		ch.mu.Unlock()
		c.setReason(reasonFilterError)
		c.abort(fmt.Errorf("%s (timer): %w", c.rs.Chain[idx].Name, err))
		return
	}
	w := ch.takeLocked()
	ch.mu.Unlock()
	if err := w.do(); err != nil {
		c.abort(err)
	}
}

// close stops the timers, runs every filter's Closed callback (ClosedWith
// e, for an EndFilter) and frees what is still queued. Runs once, from
// conn.finish.
func (ch *chain) close(e End) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.done = true
	for i := range ch.timers {
		if t := ch.timers[i].t; t != nil {
			t.Stop()
		}
	}
	for _, f := range ch.filters {
		ch.c.callClosed(f, e)
	}
	ch.filters = nil
	for d := range ch.pend {
		if ch.pend[d] != nil {
			putBuf(ch.pend[d])
			ch.pend[d] = nil
		}
	}
}
