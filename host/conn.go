package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/park"
	"github.com/tunnelwasm/tunnel/host/internal/sockq"
)

// conn is one proxied connection. Who owns what:
//
//   - the sockets belong to the connection: teardown (abort, closeGracefully,
//     finish) is the only code that shuts them down or closes them, and it
//     never waits for I/O or for a filter: no goroutine ever blocks inside a
//     socket's RawConn callback, so a Close from another goroutine returns at
//     once and wakes whoever waits on that socket;
//   - the filter state is the chain's (chain.go), under chain.mu;
//   - each direction's I/O is its pump's (pump.go): one goroutine per
//     direction, the last to end finishes the connection;
//   - the idle timer and the filters' timers are armed by the connection and
//     stopped by finish.
type conn struct {
	p     *Proxy
	l     *listener
	rs    *routeState
	info  ConnInfo
	start time.Time

	client *net.TCPConn
	server atomic.Pointer[net.TCPConn] // nil until dialled
	// dialledAddr is the target's address once connected, written once
	// before dialled is set (Stream.TargetAddr).
	dialledAddr netip.AddrPort
	dialled     atomic.Bool
	target      atomic.Pointer[string] // the target a filter chose (late dial); set once, under the chain's lock

	// The TLS sessions, when the route terminates or originates TLS (see
	// tls.go): clientTLS is set by run before the filters open, serverTLS
	// by dial before the pumps start.
	clientTLS *tls.Conn
	serverTLS atomic.Pointer[tls.Conn]
	// prefix is what was read from the client before the chain ran (a
	// ClientHello read to choose the route) and goes first toward the
	// server; the client -> server reader's own.
	prefix []byte

	ch  chain         // the filters and what they queued; see chain.go
	wmu [2]sync.Mutex // serialises the writes toward each destination
	// paused is, per direction, the filters that paused its reads
	// (Stream.PauseRead): bit i for the link at index i (the last bit for
	// those past 63). Set by PauseRead under the chain's lock, cleared by
	// ResumeRead from any goroutine, read by the direction's pump before
	// each read, which waits on pauseWake while it is not zero (pump.go,
	// awaitResume); an inline connection's loop reads it as Plan.Paused.
	paused [2]atomic.Uint64
	// pauseWake is the goroutine engine's: made by the first pause of the
	// direction, before its bit is set; one token per resume.
	pauseWake [2]chan struct{}

	// il is set (il.c != nil) for a connection of an inline route, which
	// its route's event loop forwards (loop_linux.go): then the sockets,
	// the pumps and the timers above are unused, and the loop owns the
	// sockets.
	il inlineChain

	td teardown

	read      [2]atomic.Int64 // bytes read from each direction's source
	written   [2]atomic.Int64 // bytes written to each direction's destination
	lastIO    atomic.Int64    // unix nanos of the last chunk read or written, for the idle timeout
	idleTimer *time.Timer     // fires the idle check; nil without an idle timeout

	// The pumps: one per direction; the last to end finishes the connection.
	// A pump that sat idle for a sweep (see Proxy.sweep) is poked off its
	// wait by a read deadline in the past and parks (park.go): no goroutine
	// waits for an idle connection. Where it cannot park, a pump that has
	// forwarded bytes moves to a fresh goroutine instead, so it waits on a
	// small stack, not on the one the dial and the filters grew.
	pumps atomic.Int32
	rd    [2]reader // the filtered pumps' readers
	// born is read[dir] when the pump's goroutine started, or -1 for the
	// goroutine that dialled: while read[dir] equals it, the goroutine has
	// forwarded nothing and its stack is still small.
	born  [2]atomic.Int64
	seen  [2]int64   // read[dir] at the last sweep; the sweeper's own
	dlMu  sync.Mutex // orders the read deadlines of pokes and of closeGracefully
	poked [2]bool    // a poke's deadline is set on the source; guarded by dlMu
	// A parked pump (see park.go): its source waits on parkedOn (nil when
	// the pump is not parked), under ticket, and no goroutine runs it.
	// Guarded by dlMu.
	ticket   [2]park.Ticket
	parkedOn [2]*park.Parker
	wake     [2]func() // unpark(dir, nil), made on the first park; the pump's own
	ended    [2]bool   // that direction's pump has ended for good; guarded by dlMu
}

// teardown is how a connection ends: at once (abort) or after the bytes
// already written (closeGracefully). Either runs once, from any goroutine,
// and returns without waiting for I/O or a filter.
type teardown struct {
	once    sync.Once
	closed  chan struct{} // closed by abort or closeGracefully
	closing atomic.Bool   // closeGracefully ran: the pumps drain instead of forwarding
	aborted atomic.Bool
	cause   atomic.Pointer[error]
	cancel  context.CancelFunc // stops a dial in progress; guarded by conn.dlMu
	reason  atomic.Uint32      // a closeReason, the first one set wins
	eof     atomic.Uint32      // 1 + the direction whose source ended first, or 0
}

// record is the start of an abort, run once under td.once: it counts it,
// keeps its cause (nil: an orderly close) and marks the connection closed.
func (td *teardown) record(cause error, counter *atomic.Int64) {
	if counter != nil {
		counter.Add(1)
	}
	if cause != nil {
		td.aborted.Store(true)
		td.cause.Store(&cause)
	}
	close(td.closed)
}

func (p *Proxy) startConn(l *listener, rs *routeState, client *net.TCPConn) {
	p.connWG.Add(1)
	p.openConn(l, rs, client)
}

// openConn is startConn for a connection already added to p.connWG.
func (p *Proxy) openConn(l *listener, rs *routeState, client *net.TCPConn) {
	c := &conn{p: p, l: l, rs: rs, client: client, start: time.Now()}
	c.td.closed = make(chan struct{})
	c.info = ConnInfo{ID: p.nextID.Add(1), Route: rs.Name, Client: client.RemoteAddr(), Listen: client.LocalAddr(), Target: rs.Target}
	c.ch.c = c
	if rs.group == nil {
		c.count(rs)
	} // else counted by chooseRoute, on the route it chooses
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.awake[c] = struct{}{}
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
	if !c.prepare() {
		return
	}
	if l := c.p.logger(); l.Enabled(context.Background(), slog.LevelDebug) {
		l.Debug("connection opened", "conn", c.info.ID, "route", c.rs.Name, "client", c.info.Client.String(), "target", c.rs.Target)
	}
	w, err := c.ch.open()
	if err == nil {
		err = w.do()
	}
	if err != nil {
		c.setReason(reasonRefused)
		c.finish(fmt.Errorf("refused by filter: %w", err))
		return
	}
	target := c.rs.Target
	if c.rs.LateDial {
		var ok bool
		if target, ok = c.awaitTarget(); !ok {
			return
		}
	}
	if c.td.closing.Load() {
		// A filter closed the connection before it was dialled (a "busy"
		// banner, a refused protocol, a rate limit): the client got what
		// was sent toward it; read what it still sends until it closes or
		// lingerTime. Turned away by a filter: a rejection ("denied").
		c.rs.ctr.reject(rejectDenied)
		io.Copy(io.Discard, c.client)
		c.finish(nil)
		return
	}
	if !c.dial(target) {
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
	if c.rs.LateDial {
		// This goroutine has been reading the client: it goes on doing so.
		c.born[ClientToServer].Store(-1)
		go c.pump(ServerToClient)
		c.pump(ClientToServer)
		return
	}
	go c.pump(ClientToServer)
	c.pump(ServerToClient)
}

// setDialled records the address the target was connected at, unmapped,
// for Stream.TargetAddr; once per connection, before it is read.
func (c *conn) setDialled(ap netip.AddrPort) {
	c.dialledAddr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	c.dialled.Store(true)
}

// dial connects to target and delivers what the filters queued for it. It
// reports false when the connection is finished instead.
func (c *conn) dial(target string) bool {
	ctx, cancel := context.WithTimeout(c.p.hardCtx, c.rs.dialTimeout())
	c.dlMu.Lock()
	c.td.cancel = cancel
	c.dlMu.Unlock()
	select {
	case <-c.td.closed: // aborted before the dial began
		cancel()
	default:
	}
	var d net.Dialer
	nc, err := c.rs.ctr.dial(ctx, &d, target)
	var sc *net.TCPConn
	if err == nil {
		sc = nc.(*net.TCPConn)
		if c.rs.UpstreamTLS != nil {
			var tc *tls.Conn
			if tc, err = c.dialTLS(ctx, sc, target); err != nil {
				sc.Close()
			} else {
				c.serverTLS.Store(tc)
			}
		}
	} else {
		err = fmt.Errorf("dial %s: %w", target, err)
	}
	cancel()
	c.dlMu.Lock()
	c.td.cancel = nil // the dial is over: let its context go
	c.dlMu.Unlock()
	if err != nil {
		if c.td.aborted.Load() {
			c.finish(nil)
		} else {
			c.rs.ctr.dialFailures.Add(1)
			c.setReason(reasonDialFailed)
			c.finish(err)
		}
		return false
	}
	c.server.Store(sc)
	if ta, ok := sc.RemoteAddr().(*net.TCPAddr); ok {
		c.setDialled(ta.AddrPort())
	}
	select {
	case <-c.td.closed: // aborted while dialling: teardown saw no server
		sc.Close()
		c.finish(nil)
		return false
	default:
	}
	// Deliver what the filters sent before the dial.
	w, err := c.ch.nowDialled()
	if err != nil {
		c.setReason(reasonFilterError)
		c.abort(err)
		c.finish(nil)
		return false
	}
	if err := w.do(); err != nil {
		c.abort(err)
		c.finish(nil)
		return false
	}
	return true
}

// awaitTarget runs the client -> server direction of a late-dial route
// until a filter chooses the target (Stream.SetTarget), holding what the
// chain sends toward the server. It reports false when the connection
// finished instead: bound exceeded, client gone, or closed by a filter
// (then run lingers and finishes).
func (c *conn) awaitTarget() (string, bool) {
	wait := c.rs.TargetWait
	if wait == 0 {
		wait = DefaultTargetWait
	}
	waitTimer := time.AfterFunc(wait, func() {
		c.abort(fmt.Errorf("no filter chose a target within %s (late dial)", wait))
	})
	defer waitTimer.Stop()
	for {
		if t := c.ch.chosenTarget(); t != "" {
			return t, true
		}
		if c.td.closing.Load() {
			return "", true // run lingers and finishes
		}
		if len(c.rs.chains[ClientToServer]) == 0 {
			c.finish(errors.New("late dial: no filter chose a target when the connection opened, and none sees the client's bytes"))
			return "", false
		}
		st, err := c.step(ClientToServer)
		if err != nil {
			c.finish(err)
			return "", false
		}
		// stepMove: a timer chose the target and woke this read.
		if st == stepEnd && c.ch.chosenTarget() == "" && !c.td.closing.Load() {
			c.finish(errors.New("late dial: the client ended its stream before a filter chose a target"))
			return "", false
		}
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
	c.td.once.Do(func() {
		c.dlMu.Lock()
		defer c.dlMu.Unlock()
		c.setReason(reasonFilterClose)
		c.td.closing.Store(true)
		close(c.td.closed)
		deadline := time.Now().Add(lingerTime)
		for side, s := range []*net.TCPConn{c.client, c.server.Load()} {
			if s != nil {
				c.closeWriteGracefully(s, c.secureSide(side == 1), deadline)
				s.SetReadDeadline(deadline)
			}
		}
	})
	c.resumeParked()
}

// abort ends the connection at once; a nil cause is an orderly close. It
// never waits: no goroutine blocks inside a socket's callback (see conn), so
// closing a socket wakes its pumps and writers with an error at once, and a
// filter still running finds the sockets closed when it returns.
func (c *conn) abort(cause error) { c.abortCounting(cause, nil) }

// abortCounting is abort that also adds one to counter when it does, before
// the sockets close (and so before the close log line).
func (c *conn) abortCounting(cause error, counter *atomic.Int64) {
	if c.il.c != nil {
		c.il.abort(cause, counter)
		return
	}
	c.td.once.Do(func() {
		c.td.record(cause, counter)
		c.dlMu.Lock()
		cancel := c.td.cancel
		c.dlMu.Unlock()
		if cancel != nil {
			cancel()
		}
		for _, s := range []*net.TCPConn{c.client, c.server.Load()} {
			if s == nil {
				continue
			}
			if cause != nil {
				s.SetLinger(0) // the peers see a reset, not a clean end of stream
			}
			s.Close()
		}
	})
	c.resumeParked()
}

// idleCheck runs when the idle timer fires: it aborts a connection that has
// been idle for the whole timeout, or re-arms the timer for the rest of it.
func (c *conn) idleCheck() {
	select {
	case <-c.td.closed:
		return
	default:
	}
	idle := c.rs.IdleTimeout
	since := time.Since(time.Unix(0, c.lastIO.Load()))
	if since >= idle {
		// The pumps moved nothing for the timeout; the kernel may still
		// be sending what the sockets hold to a peer that takes it (a slow
		// reader of a download): idle counts from the last of that.
		quiet, ok := c.quiet()
		if !ok || quiet >= idle {
			c.setReason(reasonIdle)
			c.abortCounting(fmt.Errorf("idle for %s", idle), &c.rs.ctr.idleTimeouts)
			return
		}
		since = quiet
	}
	c.idleTimer.Reset(idle - since)
	select {
	case <-c.td.closed: // finish stopped the timer before this Reset
		c.idleTimer.Stop()
	default:
	}
}

// quiet is sockq.Quiet of the connection's sockets, each read inside its
// RawConn.Control (one system call) so that its fd stays open meanwhile.
func (c *conn) quiet() (q time.Duration, ok bool) {
	for _, s := range [2]*net.TCPConn{c.client, c.server.Load()} {
		if s == nil {
			continue
		}
		rc, err := s.SyscallConn()
		if err != nil {
			continue
		}
		rc.Control(func(fd uintptr) {
			if sq, sok := sockq.Quiet(int(fd)); sok && (!ok || sq < q) {
				q, ok = sq, true
			}
		})
	}
	return q, ok
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
	e := c.td.cause.Load()
	reason := c.closeReason(e != nil)
	c.ch.close(end(reason, e))
	// The counters before the log line: who reads the line sees them.
	c.rs.ctr.active.Add(-1)
	c.rs.ctr.ended(c.start, reason)
	c.report(e, reason)
	c.l.connDone()
	c.p.release(c.rs)
	c.p.connWG.Done()
}

// report counts a finished connection's bytes and error, forgets it, and
// writes its close log line. cause is nil for an orderly end.
func (c *conn) report(cause *error, reason closeReason) {
	e := cause
	level := slog.LevelInfo
	if e != nil {
		level = slog.LevelWarn
		c.rs.ctr.errors.Add(1)
	}
	var read, written [2]int64
	for d := range 2 {
		read[d], written[d] = c.read[d].Load(), c.written[d].Load()
	}
	c.p.mu.Lock()
	c.rs.ctr.bytes.add(read, written) // with the delete: Stats counts it once
	delete(c.p.conns, c)
	delete(c.p.awake, c)
	c.p.mu.Unlock()
	if l := c.p.closeLogger(); l.Enabled(context.Background(), level) {
		attrs := []any{
			"conn", c.info.ID,
			"route", c.rs.Name,
			"client", c.info.Client.String(),
			"target", c.info.Target,
			"bytes_from_client", c.read[ClientToServer].Load(),
			"bytes_to_server", c.written[ClientToServer].Load(),
			"bytes_from_server", c.read[ServerToClient].Load(),
			"bytes_to_client", c.written[ServerToClient].Load(),
			"duration", time.Since(c.start).Round(time.Microsecond).String(),
			"reason", reason.String(),
		}
		if e != nil {
			attrs = append(attrs, "err", (*e).Error())
		}
		if t := c.info.TLS; t != nil {
			attrs = append(attrs, tlsAttrs(t))
		}
		if len(c.ch.tags) > 0 { // read after chain.close, which locked the chain
			tags := make([]any, len(c.ch.tags))
			for i, t := range c.ch.tags {
				tags[i] = slog.String(t.Key, t.Value)
			}
			attrs = append(attrs, slog.Group("tag", tags...))
		}
		l.Log(context.Background(), level, "connection closed", attrs...)
	}
}

// tlsAttrs is the close record's "tls" group: what the client's TLS
// session established (only the name on a route chosen by ServerNames).
// Empty fields are left out.
func tlsAttrs(t *TLSInfo) slog.Attr {
	var a []any
	if t.ServerName != "" {
		a = append(a, "sni", t.ServerName)
	}
	if t.ALPN != "" {
		a = append(a, "alpn", t.ALPN)
	}
	if t.Version != 0 {
		a = append(a, "version", tls.VersionName(t.Version))
	}
	if t.PeerSubject != "" {
		a = append(a, "client_subject", t.PeerSubject)
	}
	if t.Verified {
		a = append(a, "client_verified", true)
	}
	return slog.Group("tls", a...)
}
