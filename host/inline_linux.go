//go:build linux

package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
)

// Inline routes: a route whose every link is an InlineHook (and which
// needs no TLS, PROXY header, server name or late dial, and dials an IP
// address) has an event loop of its own, which forwards its connections
// and runs their chains on its goroutine (see RATIONALE.md, "Why do
// filtered routes run on an event loop of their own?"). The connection is
// accepted by the Proxy's loop (or any listener) and adopted by the
// route's. Its conn keeps the chain, the counters, the teardown record and
// the close line, as on the goroutine engine; inlineChain is the chain's
// side of the loop (evloop.Chain), and the loop owns the sockets.

// inlineChain runs a connection's chain for the route's loop.
type inlineChain struct {
	c      *conn
	out    atomic.Pointer[evloop.Output] // set by Open, on the loop
	target netip.AddrPort                // what the loop dials; set before it is adopted
}

// inlineTarget returns the address a connection of rs is dialled to by the
// route's own loop, or false when rs is not inline.
func (rs *routeState) inlineTarget() (netip.AddrPort, bool) {
	if len(rs.Chain) == 0 || rs.LateDial || rs.TLS != nil || rs.UpstreamTLS != nil || rs.AcceptProxy || len(rs.ServerNames) > 0 {
		return netip.AddrPort{}, false
	}
	for _, l := range rs.Chain {
		if ih, ok := l.Hook.(InlineHook); !ok || !ih.Inline() {
			return netip.AddrPort{}, false
		}
	}
	return ipTarget(rs.Target)
}

// ipTarget parses a target the loop can dial without resolving a name.
func ipTarget(target string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, false // a name: resolving it would block the loop
	}
	return ap, true
}

// startRouteLoopLocked gives an inline route state its loop; without one
// (it could not start) its connections run on goroutines. Called with p.mu
// held, from Apply.
func (p *Proxy) startRouteLoopLocked(rs *routeState) {
	if _, ok := rs.inlineTarget(); !ok || p.noLoop {
		return
	}
	l, err := evloop.New(p.logger())
	if err != nil {
		p.logger().Warn("event loop unavailable; the route's filters run on goroutines", "route", rs.Name, "err", err)
		return
	}
	rs.loop = l
	if p.rloops == nil {
		p.rloops = map[*eventLoop]struct{}{}
	}
	p.rloops[l] = struct{}{}
}

// closeRouteLoop stops rs's loop once its last connection has finished.
// Never called on a loop.
func (p *Proxy) closeRouteLoop(rs *routeState) {
	if rs.loop == nil {
		return
	}
	rs.loop.Close()
	p.mu.Lock()
	delete(p.rloops, rs.loop)
	p.mu.Unlock()
}

// abortRouteLoops aborts the connections of every route's loop, without
// waiting: those adopted but not opened yet too.
func (p *Proxy) abortRouteLoops(cause error) {
	p.mu.Lock()
	loops := make([]*eventLoop, 0, len(p.rloops))
	for l := range p.rloops {
		loops = append(loops, l)
	}
	p.mu.Unlock()
	for _, l := range loops {
		l.AbortAll(cause)
	}
}

// adopt hands an accepted connection of an inline route to the route's
// loop, which runs its chain and forwards it. Runs on the loop that
// accepted it (so it takes no Proxy lock).
func (l *listener) adopt(rs *routeState, fd int, peer, target netip.AddrPort) {
	p := l.p
	c := &conn{p: p, l: l, rs: rs, start: time.Now()}
	c.td.closed = make(chan struct{})
	c.info = ConnInfo{ID: p.nextID.Add(1), Route: rs.Name, Client: net.TCPAddrFromAddrPort(peer), Listen: l.ln.Addr(), Target: rs.Target}
	c.ch.c = c
	c.il.c = c
	c.il.target = target
	c.count(rs)
	p.connWG.Add(1)
	plan := &evloop.Plan{
		Target:      target,
		DialTimeout: rs.dialTimeout(),
		IdleTimeout: rs.IdleTimeout,
		Done:        c.il.done,
		Chain:       &c.il,
		Filtered:    [2]bool{len(rs.chains[ClientToServer]) > 0, len(rs.chains[ServerToClient]) > 0},
		Read:        &c.read,
		Written:     &c.written,
		Paused:      &c.paused,
	}
	if !rs.loop.Adopt(fd, peer, plan) {
		unix.Close(fd)
		c.il.done(evloop.Stats{Reason: evloop.Aborted, Err: evloop.ErrClosed})
	}
}

// Open implements evloop.Chain: the filters open, before the dial.
func (ic *inlineChain) Open(o *evloop.Output) error {
	c := ic.c
	ic.out.Store(o)
	if err := ic.aborted(); err != nil {
		return err // aborted before the loop took it (see abort)
	}
	c.p.mu.Lock()
	c.p.conns[c] = struct{}{}
	c.p.mu.Unlock()
	if lg := c.p.logger(); lg.Enabled(context.Background(), slog.LevelDebug) {
		lg.Debug("connection opened", "conn", c.info.ID, "route", c.rs.Name, "client", c.info.Client.String(), "target", c.rs.Target)
	}
	w, err := c.ch.open()
	if err != nil {
		c.setReason(reasonRefused)
		return fmt.Errorf("refused by filter: %w", err)
	}
	return ic.put(o, w)
}

// Connected implements evloop.Chain: what the filters sent toward the
// server before the dial goes now.
func (ic *inlineChain) Connected(o *evloop.Output) error {
	ic.c.setDialled(ic.target)
	w, err := ic.c.ch.nowDialled()
	if err != nil {
		ic.c.setReason(reasonFilterError)
		return err
	}
	return ic.put(o, w)
}

// Data implements evloop.Chain.
func (ic *inlineChain) Data(from int, b []byte, o *evloop.Output) error {
	w, err := ic.c.ch.run(Direction(from), b)
	if err != nil {
		ic.c.setReason(reasonFilterError)
		return err
	}
	return ic.put(o, w)
}

// End implements evloop.Chain.
func (ic *inlineChain) End(from int, o *evloop.Output) error {
	ic.c.sawEOF(Direction(from))
	w, err := ic.c.ch.runEnd(Direction(from))
	if err != nil {
		ic.c.setReason(reasonFilterError)
		return err
	}
	return ic.put(o, w)
}

// Timer implements evloop.Chain: the filters' timers that are due fire.
func (ic *inlineChain) Timer(o *evloop.Output) error {
	c := ic.c
	ch := &c.ch
	ch.mu.Lock()
	if ch.done || ch.timers == nil || ch.openErr != nil {
		ch.mu.Unlock()
		return nil
	}
	now := time.Since(c.start)
	for idx := range ch.timers {
		lt := &ch.timers[idx]
		if lt.due == 0 || lt.due > now {
			continue
		}
		lt.due = 0
		ch.firing = true
		err := c.callTimer(ch.filters[idx].(TimerFilter), &ch.streams[idx])
		ch.firing = false
		if err != nil {
			ch.mu.Unlock()
			c.setReason(reasonFilterError)
			return fmt.Errorf("%s (timer): %w", c.rs.Chain[idx].Name, err)
		}
	}
	w := ch.takeLocked()
	ic.armLocked()
	ch.mu.Unlock()
	return ic.put(o, w)
}

// armLocked arms the loop's timer of the connection for the earliest of
// its filters' timers. Called with the chain locked, on the loop.
func (ic *inlineChain) armLocked() {
	o := ic.out.Load()
	if o == nil {
		return
	}
	var next time.Duration
	for _, lt := range ic.c.ch.timers {
		if lt.due != 0 && (next == 0 || lt.due < next) {
			next = lt.due
		}
	}
	if next == 0 {
		o.StopTimer()
		return
	}
	o.SetTimer(next - time.Since(ic.c.start))
}

// wake gives the connection a turn on its loop once ResumeRead ended the
// last pause of a direction; from any goroutine.
func (ic *inlineChain) wake() {
	if o := ic.out.Load(); o != nil {
		o.Wake()
	}
}

// aborted returns the cause of an abort (abort ran), or nil.
func (ic *inlineChain) aborted() error {
	c := ic.c
	select {
	case <-c.td.closed:
		if e := c.td.cause.Load(); e != nil {
			return *e
		}
		return errors.New("connection aborted")
	default:
		return nil
	}
}

// put hands what the chain queued to the loop: the bytes toward each
// socket, the half-closes, the close. Once the connection is aborted (a
// filter's Stream.Abort, even from the callback that produced w) nothing
// goes out: the abort's cause is returned and ends the connection now.
func (ic *inlineChain) put(o *evloop.Output, w writes) error {
	c := ic.c
	abort := ic.aborted()
	for d := ClientToServer; d <= ServerToClient; d++ {
		if !w.locked[d] {
			continue
		}
		to := 1 - int(d) // the destination side of d: 1 is the server
		if abort == nil {
			o.Write(to, w.bytes(d))
		}
		if w.bufs[d] != nil {
			putBuf(w.bufs[d])
		}
		if w.cw[d] && abort == nil {
			o.CloseWrite(to)
		}
		if w.deferred[d] != nil {
			close(w.deferred[d])
		}
		c.wmu[d].Unlock()
	}
	if abort != nil {
		return abort
	}
	if w.close {
		c.setReason(reasonFilterClose)
		o.Close()
	}
	return nil
}

// abort ends the connection at once, from any goroutine: the loop resets
// both sockets on its next turn. If the loop has not opened it yet, Open
// finds it aborted.
func (ic *inlineChain) abort(cause error, counter *atomic.Int64) {
	c := ic.c
	c.td.once.Do(func() {
		c.td.record(cause, counter)
		if o := ic.out.Load(); o != nil {
			o.Abort(cause)
		}
	})
}

// done is the connection's evloop.Plan.Done, on the route's loop: the
// filters close, and the counters, the close line and the route's release
// follow as on the goroutine engine.
func (ic *inlineChain) done(st evloop.Stats) {
	c := ic.c
	e := c.td.cause.Load()
	if e == nil && st.Err != nil {
		e = &st.Err
	}
	if st.Reason == evloop.DialFailed && ic.aborted() != nil {
		// Aborted from another goroutine while the dial failed on the
		// loop, before the posted Output.Abort ran: counted as the abort
		// it already is, not also as a failed dial.
		st.Reason = evloop.Aborted
	}
	reason := closeReason(c.td.reason.Load())
	if reason == reasonUnset {
		reason = inlineReason(st)
	}
	if reason == reasonFilterClose && !st.Connected && st.Reason == evloop.Ended {
		// A filter closed it before the target was dialled (a "busy"
		// banner, a rate limit): turned away, as the goroutine engine
		// counts it.
		c.rs.ctr.reject(rejectDenied)
	}
	c.ch.close(end(reason, e))
	c.rs.ctr.loopEnded(c.start, reason, st)
	c.report(e, reason)
	c.l.connDone()
	c.p.doneOnLoop(c.rs)
}

// inlineReason is the reason of an inline connection that ended with st
// and recorded none: as loopReason, except that a failure that is neither a
// peer's nor a system call's (epoll_ctl out of memory is the loop's
// resource, counted as reset, as classify counts the goroutine engine's)
// came from the filters' output, e.g. more queued for a peer than it reads
// (a Timer that makes bytes of its own: what it sends stops only the
// source of its direction being read, see Output.Write).
func inlineReason(st evloop.Stats) closeReason {
	if st.Reason == evloop.Failed && !errors.As(st.Err, new(*evloop.PeerError)) {
		return classify(st.Err)
	}
	return loopReason(st)
}
