package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// chunkSize is the size of the buffers the filtered path reads into.
const chunkSize = 32 << 10

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

// Stream is a filter's handle on its connection, from its place in the chain.
// Its methods may only be called from inside the filter's callbacks.
type Stream struct {
	c   *conn
	idx int // the filter's link index
}

// Info describes the connection.
func (s *Stream) Info() *ConnInfo { return &s.c.info }

// Send passes b on in direction dir from this filter's place in the chain: to
// the next filter of that direction, or to the destination socket when there
// is none. Sending toward ServerToClient from a client -> server callback
// answers the client. b is copied or consumed before Send returns.
func (s *Stream) Send(dir Direction, b []byte) error {
	if dir > ServerToClient {
		return fmt.Errorf("send: invalid direction %d", dir)
	}
	return s.c.deliver(dir, s.c.rs.next[s.idx][dir], b)
}

// CloseWrite ends the stream dir at its destination once the bytes already
// sent are written (the TCP half-close). Later sends toward dir fail with
// ErrWriteClosed.
func (s *Stream) CloseWrite(dir Direction) error {
	if dir > ServerToClient {
		return fmt.Errorf("close write: invalid direction %d", dir)
	}
	c := s.c
	if c.wclosed[dir] {
		return nil
	}
	if len(c.rs.chains[dir]) == 0 {
		return ErrNotAttached
	}
	c.wclosed[dir] = true
	c.cwPending[dir] = true
	return nil
}

// Close closes the connection once the bytes already sent are written.
func (s *Stream) Close() { s.c.closeReq = true }

// conn is one proxied connection. Its goroutines: one pump per direction.
type conn struct {
	p      *Proxy
	l      *listener
	rs     *routeState
	info   ConnInfo
	start  time.Time
	client *net.TCPConn
	server atomic.Pointer[net.TCPConn] // nil until dialled

	closeOnce sync.Once
	closed    chan struct{}
	closing   atomic.Bool // closeGracefully ran: the pumps drain instead of forwarding
	aborted   atomic.Bool
	cause     atomic.Pointer[error]
	bytes     [2]atomic.Int64 // bytes per direction: read (filtered) or delivered (spliced)
	lastIO    atomic.Int64    // unix nanos of the last chunk, for the idle timeout
	idleTimer *time.Timer     // fires the idle check; nil without an idle timeout

	// The pumps: one per direction; the last to end finishes the connection.
	// A pump that has forwarded bytes and then sat idle for a sweep (see
	// Proxy.sweep) is poked off its wait by a read deadline in the past and
	// moves to a fresh goroutine, so an idle connection waits on small
	// stacks, not on the ones that the dial and the filters grew.
	pumps atomic.Int32
	rd    [2]reader // the filtered pumps' readers
	// born is bytes[dir] when the pump's goroutine started, or -1 for the
	// goroutine that dialled: while bytes[dir] equals it, the goroutine has
	// forwarded nothing and its stack is still small.
	born  [2]atomic.Int64
	seen  [2]int64   // bytes[dir] at the last sweep; the sweeper's own
	dlMu  sync.Mutex // orders the read deadlines of pokes and of closeGracefully
	poked [2]bool    // a poke's deadline is set on the source; guarded by dlMu

	// Filter state; guarded by mu.
	mu        sync.Mutex
	filters   []Filter
	streams   []Stream
	pend      [2]*[]byte // bytes waiting to be written toward each destination
	wclosed   [2]bool    // no more sends toward that destination
	cwPending [2]bool    // CloseWrite to perform at the next flush
	closeReq  bool
	depth     int
	ended     [2]bool // End already delivered for that direction

	wmu [2]sync.Mutex // serialises writes toward each destination
}

func (p *Proxy) startConn(l *listener, rs *routeState, client *net.TCPConn) {
	c := &conn{p: p, l: l, rs: rs, client: client, start: time.Now(), closed: make(chan struct{})}
	c.info = ConnInfo{ID: p.nextID.Add(1), Route: rs.Name, Client: client.RemoteAddr(), Listen: client.LocalAddr(), Target: rs.Target}
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.connWG.Add(1)
	p.startSweepLocked()
	p.mu.Unlock()
	go c.run()
}

func (c *conn) destination(dir Direction) *net.TCPConn {
	if dir == ClientToServer {
		return c.server.Load()
	}
	return c.client
}

func (c *conn) source(dir Direction) *net.TCPConn {
	if dir == ClientToServer {
		return c.client
	}
	return c.server.Load()
}

// run opens the filters, dials the target and starts the pumps.
func (c *conn) run() {
	if l := c.p.logger(); l.Enabled(context.Background(), slog.LevelInfo) {
		l.Info("connection opened", "conn", c.info.ID, "route", c.rs.Name, "client", c.info.Client.String(), "target", c.rs.Target)
	}
	if err := c.openFilters(); err != nil {
		c.finish(fmt.Errorf("refused by filter: %w", err))
		return
	}
	c.mu.Lock()
	if c.closeReq {
		// A filter closed the connection while opening (a "busy" banner,
		// say): the target is never dialled, but the client gets what was
		// sent toward it.
		if c.pend[ClientToServer] != nil {
			putBuf(c.pend[ClientToServer])
			c.pend[ClientToServer] = nil
		}
		c.cwPending[ClientToServer] = false
		c.flushLocked()
		io.Copy(io.Discard, c.client) // until EOF or lingerTime
		c.finish(nil)
		return
	}
	c.mu.Unlock()
	timeout := c.rs.DialTimeout
	if timeout == 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(c.p.hardCtx, timeout)
	var d net.Dialer
	sc, err := d.DialContext(ctx, "tcp", c.rs.Target)
	cancel()
	if err != nil {
		c.finish(fmt.Errorf("dial %s: %w", c.rs.Target, err))
		return
	}
	c.server.Store(sc.(*net.TCPConn))
	select {
	case <-c.closed: // aborted while dialling
		sc.Close()
		c.finish(nil)
		return
	default:
	}

	// Deliver what the filters sent while opening.
	c.mu.Lock()
	if err := c.flushLocked(); err != nil {
		c.abort(err)
		c.finish(nil)
		return
	}
	if c.rs.IdleTimeout > 0 {
		c.lastIO.Store(time.Now().UnixNano())
		// Armed only once stored: idleCheck reads c.idleTimer.
		c.idleTimer = time.AfterFunc(time.Duration(1<<62), c.idleCheck)
		c.idleTimer.Reset(c.rs.IdleTimeout)
	}
	c.born[ServerToClient].Store(-1) // this goroutine dialled: never small
	c.pumps.Store(2)                 // from here on, sweeps look at the connection
	go c.pump(ClientToServer)
	c.pump(ServerToClient)
}

func (c *conn) openFilters() error {
	n := len(c.rs.Chain)
	if n == 0 {
		return nil
	}
	c.filters = make([]Filter, n)
	c.streams = make([]Stream, n)
	for i, l := range c.rs.Chain {
		f, err := l.Hook.Open(&c.info)
		if err != nil {
			c.filters = c.filters[:i]
			return fmt.Errorf("%s: %w", l.Name, err)
		}
		c.filters[i] = f
		c.streams[i] = Stream{c: c, idx: i}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, f := range c.filters {
		if err := f.Opened(&c.streams[i]); err != nil {
			return fmt.Errorf("%s: %w", c.rs.Chain[i].Name, err)
		}
	}
	return nil
}

// deliver hands b to the filter at position pos of dir's chain, or queues it
// for the destination past the chain's end. Called with c.mu held.
func (c *conn) deliver(dir Direction, pos int, b []byte) error {
	chain := c.rs.chains[dir]
	if len(chain) == 0 {
		return ErrNotAttached
	}
	if pos >= len(chain) {
		if c.wclosed[dir] {
			return ErrWriteClosed
		}
		if len(b) == 0 {
			return nil
		}
		pb := c.pend[dir]
		if pb == nil {
			pb = getBuf()
			c.pend[dir] = pb
		}
		*pb = append(*pb, b...)
		return nil
	}
	if len(b) == 0 {
		return nil
	}
	if c.depth >= 64 {
		return ErrSendDepth
	}
	c.depth++
	i := chain[pos]
	err := c.filters[i].Data(dir, b, &c.streams[i])
	c.depth--
	if err != nil {
		return fmt.Errorf("%s (%s): %w", c.rs.Chain[i].Name, dir, err)
	}
	return nil
}

// endLocked runs the End callbacks of dir's chain and schedules the
// half-close of its destination.
func (c *conn) endLocked(dir Direction) error {
	if c.ended[dir] {
		return nil
	}
	c.ended[dir] = true
	for _, i := range c.rs.chains[dir] {
		if err := c.filters[i].End(dir, &c.streams[i]); err != nil {
			return fmt.Errorf("%s (%s end): %w", c.rs.Chain[i].Name, dir, err)
		}
	}
	if !c.wclosed[dir] {
		c.wclosed[dir] = true
		c.cwPending[dir] = true
	}
	return nil
}

// flushLocked writes what the filters queued, performs requested
// half-closes and closes. It is called with c.mu held and releases it: the
// writes happen outside c.mu, so a peer that is slow to read never blocks
// the other direction's filters, while the per-destination write locks,
// taken before c.mu is released, keep the bytes in the order the filters
// produced them.
func (c *conn) flushLocked() error {
	var bufs [2]*[]byte
	var cw [2]bool
	var locked [2]bool
	for d := ClientToServer; d <= ServerToClient; d++ {
		if c.pend[d] != nil || c.cwPending[d] {
			c.wmu[d].Lock()
			locked[d] = true
			bufs[d], c.pend[d] = c.pend[d], nil
			cw[d], c.cwPending[d] = c.cwPending[d], false
		}
	}
	closeReq := c.closeReq
	c.mu.Unlock()
	var err error
	for d := ClientToServer; d <= ServerToClient; d++ {
		if !locked[d] {
			continue
		}
		dst := c.destination(d)
		if bufs[d] != nil {
			if err == nil {
				if _, werr := dst.Write(*bufs[d]); werr != nil {
					err = fmt.Errorf("write %s: %w", d, werr)
				}
			}
			putBuf(bufs[d])
		}
		if cw[d] && err == nil {
			if cerr := dst.CloseWrite(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
				err = fmt.Errorf("half-close %s: %w", d, cerr)
			}
		}
		c.wmu[d].Unlock()
	}
	if err == nil && closeReq {
		c.closeGracefully()
	}
	return err
}

// pump forwards one direction until its source ends or the connection
// aborts, or until a sweep moves the direction to a fresh goroutine.
func (c *conn) pump(dir Direction) {
	src, dst := c.source(dir), c.destination(dir)
	var err error
	var handOff bool
	if len(c.rs.chains[dir]) == 0 && c.rs.IdleTimeout == 0 {
		handOff, err = c.splice(dir, src, dst)
	} else {
		handOff, err = c.filtered(dir, src)
		if !handOff {
			c.rd[dir].release()
		}
	}
	if handOff {
		go c.pump(dir) // allocates, but only when an idle pump moves
		return
	}
	if c.closing.Load() {
		// A filter closed the connection: read what the peer still sends
		// and drop it, so that closing the socket does not reset it and
		// discard the bytes still queued toward the peer.
		io.Copy(io.Discard, src)
	} else if err != nil {
		c.abort(err)
	}
	if c.pumps.Add(-1) == 0 {
		c.finish(nil)
	}
}

// filtered is the path of a direction with filters (or an idle timeout): read
// a chunk, run the chain, write what it produced. It returns handOff when a
// sweep poked it: pump moves the direction to a fresh goroutine.
func (c *conn) filtered(dir Direction, src *net.TCPConn) (handOff bool, err error) {
	r := &c.rd[dir]
	if r.rc == nil {
		rc, err := src.SyscallConn()
		if err != nil {
			return false, err
		}
		r.rc, r.c, r.dir = rc, c, dir
		r.fn = r.readFD
	}
	r.rerr, r.ferr = nil, nil
	err = r.rc.Read(r.fn)
	switch {
	case c.closing.Load():
		return false, nil // a filter closed the connection: pump drains the rest
	case r.ferr != nil:
		return false, r.ferr
	case r.rerr == io.EOF:
		c.mu.Lock()
		var ferr error
		if len(c.rs.chains[dir]) == 0 {
			c.wclosed[dir], c.cwPending[dir] = true, true
		} else {
			ferr = c.endLocked(dir)
		}
		if ferr != nil {
			c.mu.Unlock()
			return false, ferr
		}
		return false, c.flushLocked()
	case r.rerr != nil:
		return false, fmt.Errorf("read %s: %w", dir, r.rerr)
	case errors.Is(err, os.ErrDeadlineExceeded) && c.unpoke(dir, src):
		return true, nil
	default:
		return false, fmt.Errorf("read %s: %w", dir, err)
	}
}

// forward runs one chunk read from dir's source through the chain and
// writes what it produced.
func (c *conn) forward(dir Direction, b []byte) error {
	c.bytes[dir].Add(int64(len(b)))
	if c.rs.IdleTimeout > 0 {
		c.lastIO.Store(time.Now().UnixNano())
	}
	c.mu.Lock()
	var err error
	if len(c.rs.chains[dir]) == 0 {
		err = c.queueRaw(dir, b)
	} else {
		err = c.deliver(dir, 0, b)
	}
	if err != nil {
		c.mu.Unlock()
		return err
	}
	return c.flushLocked()
}

// aLongTimeAgo is the read deadline of a poke: a read fails at once.
var aLongTimeAgo = time.Unix(1, 0)

// sweep moves the pumps that have forwarded bytes and then been idle since
// the previous sweep onto fresh goroutines. Only the sweeper calls it.
func (c *conn) sweep() {
	if c.pumps.Load() == 0 {
		return // dialling, or ended
	}
	for d := ClientToServer; d <= ServerToClient; d++ {
		if !spliceMovable && len(c.rs.chains[d]) == 0 && c.rs.IdleTimeout == 0 {
			continue
		}
		b := c.bytes[d].Load()
		if b == c.seen[d] && b != c.born[d].Load() {
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
	if c.closing.Load() || c.poked[dir] || src == nil {
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
	if !c.poked[dir] || c.closing.Load() {
		return false
	}
	c.born[dir].Store(c.bytes[dir].Load()) // before poked is cleared: no second poke for this move
	c.poked[dir] = false
	src.SetReadDeadline(time.Time{})
	return true
}

// queueRaw queues bytes of a direction with no filters (idle-timeout routes).
func (c *conn) queueRaw(dir Direction, b []byte) error {
	if c.wclosed[dir] {
		return ErrWriteClosed
	}
	pb := c.pend[dir]
	if pb == nil {
		pb = getBuf()
		c.pend[dir] = pb
	}
	*pb = append(*pb, b...)
	return nil
}

// reader is a filtered pump's read loop. It runs inside one RawConn.Read
// call for as long as the socket has bytes: it reads a chunk and forwards it
// (conn.forward), until a read fails with EAGAIN, when it waits for the next
// readiness event, or ends in EOF, an error, or a closing connection. A
// buffer is only taken from the pool while bytes are ready, so an idle
// connection holds none.
type reader struct {
	rc   syscall.RawConn
	c    *conn
	dir  Direction
	buf  *[]byte
	rerr error // the read failed, or io.EOF
	ferr error // forwarding failed
	fn   func(fd uintptr) bool
}

func (r *reader) readFD(fd uintptr) bool {
	for {
		if r.buf == nil {
			r.buf = getBuf()
		}
		b := (*r.buf)[:cap(*r.buf)]
		n, err := syscall.Read(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			r.release()
			return false
		case err != nil:
			r.rerr = err
			return true
		case n == 0:
			r.rerr = io.EOF
			return true
		}
		if r.c.closing.Load() {
			return true // a filter closed the connection: these bytes are dropped
		}
		if err := r.c.forward(r.dir, b[:n]); err != nil {
			r.ferr = err
			return true
		}
		// Read again even after a short read: the peer's FIN (or a reset)
		// may have arrived with these bytes, and no readiness event would
		// announce it again.
	}
}

func (r *reader) release() {
	if r.buf != nil {
		putBuf(r.buf)
		r.buf = nil
	}
}

// lingerTime bounds how long a connection closed by a filter keeps reading
// (and dropping) what its peers still send.
const lingerTime = 2 * time.Second

// closeGracefully is the close a filter asks for: the bytes already written
// are delivered and followed by a FIN on both sides; the pumps then read and
// drop what the peers still send, for at most lingerTime, so that the final
// close does not turn into a reset that discards the undelivered bytes (the
// lingering close of nginx and net/http).
func (c *conn) closeGracefully() {
	c.closeOnce.Do(func() {
		c.dlMu.Lock()
		defer c.dlMu.Unlock()
		c.closing.Store(true)
		close(c.closed)
		deadline := time.Now().Add(lingerTime)
		for _, s := range []*net.TCPConn{c.client, c.server.Load()} {
			if s != nil {
				s.CloseWrite()
				s.SetReadDeadline(deadline)
			}
		}
	})
}

// abort closes both sockets at once. A nil cause is an orderly close.
func (c *conn) abort(cause error) {
	c.closeOnce.Do(func() {
		if cause != nil {
			c.aborted.Store(true)
			c.cause.Store(&cause)
		}
		close(c.closed)
		if cause != nil {
			// Let the peers see a reset rather than a clean end of stream.
			c.client.SetLinger(0)
		}
		c.client.Close()
		if s := c.server.Load(); s != nil {
			if cause != nil {
				s.SetLinger(0)
			}
			s.Close()
		}
	})
}

// idleCheck runs when the idle timer fires: it aborts a connection that has
// been idle for the whole timeout, or re-arms the timer for the rest of it.
func (c *conn) idleCheck() {
	select {
	case <-c.closed:
		return
	default:
	}
	idle := c.rs.IdleTimeout
	since := time.Since(time.Unix(0, c.lastIO.Load()))
	if since >= idle {
		c.abort(fmt.Errorf("idle for %s", idle))
		return
	}
	c.idleTimer.Reset(idle - since)
	select {
	case <-c.closed: // finish stopped the timer before this Reset
		c.idleTimer.Stop()
	default:
	}
}

// finish releases everything the connection holds. Runs once: in run when
// the pumps never started, or in the pump that ends last.
func (c *conn) finish(cause error) {
	c.abort(cause)
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	// After a graceful close abort did nothing: close the sockets now.
	c.client.Close()
	if s := c.server.Load(); s != nil {
		s.Close()
	}
	c.mu.Lock()
	for _, f := range c.filters {
		f.Closed()
	}
	c.filters = nil
	for d := range c.pend {
		if c.pend[d] != nil {
			putBuf(c.pend[d])
			c.pend[d] = nil
		}
	}
	c.mu.Unlock()
	level := slog.LevelInfo
	e := c.cause.Load()
	if e != nil {
		level = slog.LevelWarn
	}
	if l := c.p.logger(); l.Enabled(context.Background(), level) {
		attrs := []any{
			"conn", c.info.ID,
			"route", c.rs.Name,
			"client", c.info.Client.String(),
			"target", c.rs.Target,
			"bytes_client_to_server", c.bytes[ClientToServer].Load(),
			"bytes_server_to_client", c.bytes[ServerToClient].Load(),
			"duration", time.Since(c.start).Round(time.Microsecond).String(),
		}
		if e != nil {
			attrs = append(attrs, "err", (*e).Error())
		}
		l.Log(context.Background(), level, "connection closed", attrs...)
	}
	c.p.mu.Lock()
	delete(c.p.conns, c)
	c.p.mu.Unlock()
	c.l.connDone()
	c.p.release(c.rs)
	c.p.connWG.Done()
}
