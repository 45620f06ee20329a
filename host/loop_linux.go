//go:build linux

package host

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
)

// The event loops: a listener whose route is plain when it is bound (no
// filter, no late dial, an IP target) is served by the Proxy's event loops
// (host/internal/evloop; how many: loopsFor), each polling it: the one the
// kernel wakes accepts, dials and forwards, without a goroutine per
// connection. A connection that the route's current state
// does not let the loop forward (a reload added a filter) is handed over to
// the goroutine engine. See RATIONALE.md, "Why an event loop for plain
// routes?".

// eventLoop and loopListener are the loop's types (empty stand-ins
// elsewhere, see loop_other.go).
type (
	eventLoop    = evloop.Loop
	loopListener = evloop.Listener
)

// loopTarget returns the address the loop dials for a connection of rs, or
// false when rs needs the goroutine engine.
func (rs *routeState) loopTarget() (netip.AddrPort, bool) {
	if len(rs.Chain) > 0 || rs.LateDial || rs.TLS != nil || rs.UpstreamTLS != nil || rs.AcceptProxy || len(rs.ServerNames) > 0 {
		return netip.AddrPort{}, false
	}
	return ipTarget(rs.Target)
}

// maxLoops bounds the event loops of plain routes.
const maxLoops = 8

// loopsFor is how many event loops serve plain routes when the Go
// scheduler runs on procs CPUs (GOMAXPROCS): one per CPU but one, at least
// one, at most maxLoops. A loop blocks in epoll_wait as a system call, and
// when every P is held by a goroutine in a system call, the runtime's
// monitor takes them back and hands them around (on 2 CPUs with two loops:
// 4 nanosleep and 2 futex calls per connection instead of 0.1 and 0.2, and
// 5–10 % more CPU per connection); with one P to spare it leaves them. So
// on two CPUs one loop serves, as before, and a larger machine gets a loop
// per further CPU instead of one core for every plain route.
func loopsFor(procs int) int {
	return min(max(procs-1, 1), maxLoops)
}

// loopsLocked returns the Proxy's event loops, started on first use; nil
// when they cannot run (it is then logged once and listeners accept on
// goroutines). Called with p.mu held.
func (p *Proxy) loopsLocked() []*eventLoop {
	if p.loops == nil && !p.noLoop {
		n := p.loopCount
		if n <= 0 {
			n = loopsFor(runtime.GOMAXPROCS(0))
		}
		for range n {
			l, err := evloop.New(p.logger())
			if err != nil {
				p.logger().Warn("event loop unavailable; plain routes run on goroutines", "err", err)
				for _, l := range p.loops {
					l.Close()
				}
				p.loops = nil
				p.noLoop = true
				return nil
			}
			p.loops = append(p.loops, l)
		}
	}
	return p.loops
}

// serveOnLoops hands l's listening socket to every loop, each with a
// descriptor of its own: the kernel wakes one of them per new connection
// (EPOLLEXCLUSIVE), which that loop then forwards. On error the listener
// is left to the goroutine accept loop.
func (l *listener) serveOnLoops(loops []*eventLoop) error {
	rc, err := l.ln.SyscallConn()
	if err != nil {
		return err
	}
	var hs []*loopListener
	undo := func() {
		for _, h := range hs {
			h.Close()
		}
	}
	for i, loop := range loops {
		fd := -1
		var derr error
		if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			undo()
			return err
		}
		if derr != nil {
			undo()
			return fmt.Errorf("dup listener: %w", derr)
		}
		h, err := loop.AddListener(fd, loopAcceptor{l, i})
		if err != nil {
			unix.Close(fd)
			undo()
			return err
		}
		hs = append(hs, h)
	}
	l.lh.Store(&hs)
	l.wake()     // in case Admit paused a loop's listener before hs was stored
	l.ln.Close() // the loops' duplicates keep the socket open
	close(l.exit)
	return nil
}

// loopAcceptor is a listener as the evloop.Acceptor of the loop at index
// loop: the connections it accepts count their bytes in that loop's
// routeCounters.loopBytes.
type loopAcceptor struct {
	*listener
	loop int
}

// Accepted implements evloop.Acceptor.
func (a loopAcceptor) Accepted(fd int, peer netip.AddrPort) *evloop.Plan {
	return a.listener.accepted(fd, peer, a.loop)
}

// Admit implements evloop.Acceptor: the connection cap. It takes the slot
// of the connection about to be accepted (Unadmit gives it back if none
// is): with several loops, a check now and a count after accept4 let two
// loops both take the last slot.
func (l *listener) Admit() bool {
	for {
		rs := l.state.Load()
		if l.takeSlot(rs.MaxConns) {
			return true
		}
		l.paused.Store(true)
		// A connection that ended between the check and the store saw no
		// pause to lift: look again, unless another loop lifted it.
		if l.open.Load() >= int64(rs.MaxConns) || !l.paused.CompareAndSwap(true, false) {
			return false
		}
	}
}

// takeSlot counts one more open connection unless max (0: no cap) are.
func (l *listener) takeSlot(max int) bool {
	for {
		n := l.open.Load()
		if max > 0 && n >= int64(max) {
			return false
		}
		if l.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Unadmit implements evloop.Unadmitter: accept4 found no connection for
// the slot Admit took.
func (l *listener) Unadmit() { l.connDone() }

// accepted is the evloop.Acceptor's Accepted of the loop at index loop:
// the loop forwards the connection when the route is plain; otherwise it
// goes to the goroutine engine. The loops call it concurrently.
func (l *listener) accepted(fd int, peer netip.AddrPort, loop int) *evloop.Plan {
	p := l.p
	rs := l.acquire() // the slot in l.open: taken by Admit
	target, ok := rs.loopTarget()
	if !ok {
		if target, ok := rs.inlineTarget(); ok && rs.loop != nil {
			l.adopt(rs, fd, peer, target)
			return nil
		}
		f := os.NewFile(uintptr(fd), "")
		nc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			p.logger().Error("accept: handing the connection to a goroutine", "err", err)
			l.open.Add(-1)
			p.release(rs)
			return nil
		}
		// Not on the loop: openConn takes p.mu, which Apply holds while
		// it waits for the loop to add a listener.
		p.connWG.Add(1)
		go p.openConn(l, rs, nc.(*net.TCPConn))
		return nil
	}
	lc := &loopConn{l: l, rs: rs, id: p.nextID.Add(1), client: peer, start: time.Now(), loop: loop}
	p.connWG.Add(1)
	rs.ctr.accepted.Add(1)
	rs.ctr.active.Add(1)
	if lg := p.logger(); lg.Enabled(context.Background(), slog.LevelDebug) {
		lg.Debug("connection opened", "conn", lc.id, "route", rs.Name, "client", peer.String(), "target", rs.Target)
	}
	return &evloop.Plan{Target: target, DialTimeout: rs.dialTimeout(), IdleTimeout: rs.IdleTimeout, Done: lc.done, Owner: lc}
}

// loopConn is what the Proxy keeps of a connection the loop forwards: what
// its close log line needs.
type loopConn struct {
	l      *listener
	rs     *routeState
	id     uint64
	client netip.AddrPort
	start  time.Time
	loop   int // the index of the loop that forwards it
}

// done is the connection's evloop.Plan.Done: the close log line and the
// release of the route state, on the loop goroutine.
func (lc *loopConn) done(st evloop.Stats) {
	p := lc.l.p
	ctr := lc.rs.ctr
	ctr.loopEnded(lc.start, loopReason(st), st)
	if st.Err != nil {
		ctr.errors.Add(1)
	}
	ctr.loopBytes[lc.loop].add(st.Read, st.Written)
	level := slog.LevelInfo
	if st.Err != nil {
		level = slog.LevelWarn
	}
	if lg := p.closeLogger(); lg.Enabled(context.Background(), level) {
		attrs := []any{
			"conn", lc.id,
			"route", lc.rs.Name,
			"client", lc.client.String(),
			"target", lc.rs.Target,
			"bytes_from_client", st.Read[ClientToServer],
			"bytes_to_server", st.Written[ClientToServer],
			"bytes_from_server", st.Read[ServerToClient],
			"bytes_to_client", st.Written[ServerToClient],
			"duration", time.Since(lc.start).Round(time.Microsecond).String(),
			"reason", loopReason(st).String(),
		}
		if st.Err != nil {
			attrs = append(attrs, "err", st.Err.Error())
		}
		lg.Log(context.Background(), level, "connection closed", attrs...)
	}
	lc.l.connDone()
	p.doneOnLoop(lc.rs)
}

// doneOnLoop drops a finished loop connection's reference to rs and its
// count in connWG. The last reference's release (the owner's OnRelease,
// the close of a route's loop) never runs on a loop: on a goroutine.
func (p *Proxy) doneOnLoop(rs *routeState) {
	if rs.refs.Add(-1) == 0 {
		go func() {
			p.released(rs)
			p.connWG.Done()
		}()
		return
	}
	p.connWG.Done()
}

// loopsNow returns the plain routes' loops, if started.
func (p *Proxy) loopsNow() []*eventLoop {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loops
}

// abortLoop aborts every connection the loops forward.
func (p *Proxy) abortLoop(cause error) {
	loops := p.loopsNow()
	for _, loop := range loops {
		loop.AbortAll(cause) // all told at once, none waited for
	}
	for _, loop := range loops {
		loop.Abort(cause) // and each's turn done
	}
}

// closeLoop stops the loops, once the Proxy is shut down.
func (p *Proxy) closeLoop() {
	p.mu.Lock()
	loops := p.loops
	p.loops = nil
	p.mu.Unlock()
	for _, loop := range loops {
		loop.Close()
	}
}

// loopReason is the close reason of a connection the loop forwarded.
func loopReason(st evloop.Stats) closeReason {
	switch st.Reason {
	case evloop.Ended:
		if st.ServerFINFirst {
			return reasonServerEOF
		}
		return reasonClientEOF
	case evloop.DialFailed:
		return reasonDialFailed
	case evloop.IdleTimeout:
		return reasonIdle
	case evloop.Aborted:
		return reasonShutdown
	}
	return reasonReset
}

// eachLoopConn runs, for each loop in turn, start with the loop's index,
// then f with the figures so far of every connection that loop forwards, in
// one turn of it (see Stats): each loop's finished and open connections are
// counted at one moment, so none is counted twice or missed.
func (p *Proxy) eachLoopConn(start func(loop int), f func(rc *routeCounters, b byteCounts)) {
	loops := p.loopsNow()
	if loops == nil { // not started, or stopped: nothing changes the counts
		for i := range maxLoops {
			start(i)
		}
		return
	}
	for i, loop := range loops {
		ran := false
		loop.Each(func() { ran = true; start(i) }, func(owner any, s evloop.Stats) {
			f(owner.(*loopConn).rs.ctr, byteCounts{read: s.Read, written: s.Written})
		})
		if !ran {
			// The loop has stopped (closeLoop meanwhile, or an epoll
			// error): it runs nothing more, its counts are final, and the
			// stop, seen under its lock, came after its last write.
			start(i)
		}
	}
}

// eachLoopConnStats calls f with every connection the loops forward.
func (p *Proxy) eachLoopConnStats(f func(ConnStats)) {
	for _, loop := range p.loopsNow() {
		loop.Each(func() {}, func(owner any, s evloop.Stats) {
			lc := owner.(*loopConn)
			f(ConnStats{ID: lc.id, Route: lc.rs.Name, Client: lc.client.String(), Target: lc.rs.Target, Start: lc.start,
				BytesFromClient: s.Read[ClientToServer], BytesToServer: s.Written[ClientToServer],
				BytesFromServer: s.Read[ServerToClient], BytesToClient: s.Written[ServerToClient]})
		})
	}
}
