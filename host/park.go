package host

import "github.com/tunnelwasm/tunnel/host/internal/park"

// Parking: a pump that has waited a whole sweep for its source (see
// Proxy.sweep) is poked off its read and, instead of waiting on a goroutine,
// parks the source socket on the Proxy's Parker (host/internal/park) and
// ends. The Parker starts a fresh pump once the source is readable, or
// teardown does (resumeParked). An idle filtered connection then holds no
// goroutine stack. See RATIONALE.md, "Why park idle pumps?".

// parkerLocked returns the Proxy's Parker, started on first use; nil when it
// cannot run (pumps then move to fresh goroutines instead). Called with
// p.mu held.
func (p *Proxy) parkerLocked() *park.Parker {
	if p.parker == nil && !p.noPark {
		pk, err := park.New()
		if err != nil {
			p.noPark = true
			return nil
		}
		p.parker = pk
	}
	return p.parker
}

// closeParker stops the Parker once Shutdown has ended the connections:
// a pump that would park later runs on a goroutine instead.
func (p *Proxy) closeParker() {
	p.mu.Lock()
	pk := p.parker
	p.parker = nil
	p.noPark = true
	p.mu.Unlock()
	if pk != nil {
		pk.Close()
	}
}

// parkable reports whether dir's pump may park: not while a TLS session
// reads its source (it may hold bytes the socket no longer shows).
func (c *conn) parkable(dir Direction) bool {
	return c.secureSource(dir) == nil
}

// park parks dir's source and reports true, or reports false when the pump
// must go on on a goroutine (no Parker, TLS, or the connection is closing).
func (c *conn) park(dir Direction) bool {
	if !c.parkable(dir) {
		return false
	}
	p := c.p
	p.mu.Lock()
	pk := p.parkerLocked()
	p.mu.Unlock()
	if pk == nil {
		return false
	}
	rc := c.rd[dir].rc // the filtered path's, when it has read
	if rc == nil {
		var err error
		if rc, err = c.source(dir).SyscallConn(); err != nil {
			return false
		}
	}
	if c.wake[dir] == nil {
		c.wake[dir] = func() { c.unpark(dir, nil) }
	}
	c.dlMu.Lock()
	select {
	case <-c.td.closed:
		c.dlMu.Unlock()
		return false // teardown has run: the pump ends on its goroutine
	default:
	}
	c.parkedOn[dir] = pk // before Park: its callback may run at once
	t, err := pk.Park(rc, c.wake[dir])
	if err != nil {
		c.parkedOn[dir] = nil
		c.dlMu.Unlock()
		return false
	}
	c.ticket[dir] = t
	asleep := c.asleepLocked()
	c.dlMu.Unlock()
	if asleep {
		c.leaveSweeps()
	}
	return true
}

// asleepLocked reports whether no pump of c is awake: each is parked or
// has ended. Called with dlMu held.
func (c *conn) asleepLocked() bool {
	return (c.parkedOn[0] != nil || c.ended[0]) && (c.parkedOn[1] != nil || c.ended[1])
}

// leaveSweeps takes c out of Proxy.awake when no pump of it is awake:
// sweeps skip it until one wakes (unpark puts it back). Lock order: p.mu
// before dlMu, never the other way.
func (c *conn) leaveSweeps() {
	p := c.p
	p.mu.Lock()
	c.dlMu.Lock()
	if c.asleepLocked() {
		delete(p.awake, c)
	}
	c.dlMu.Unlock()
	p.mu.Unlock()
}

// unpark starts a fresh pump for dir if it is parked: from the Parker when
// the source is readable (pk nil), or from teardown (pk the Parker, whose
// wait it takes back). Whoever finds it parked (parkedOn set) starts the pump.
func (c *conn) unpark(dir Direction, pk *park.Parker) {
	c.dlMu.Lock()
	if c.parkedOn[dir] == nil {
		c.dlMu.Unlock()
		return
	}
	t := c.ticket[dir]
	c.parkedOn[dir] = nil
	c.dlMu.Unlock()
	p := c.p
	p.mu.Lock()
	if _, open := p.conns[c]; open {
		p.awake[c] = struct{}{}
	}
	p.mu.Unlock()
	if pk != nil {
		pk.Unpark(t)
	}
	go c.pump(dir)
}

// resumeParked starts the parked pumps again, after teardown began: they
// find the connection closing and end (or drain, after a graceful close).
func (c *conn) resumeParked() {
	for d := ClientToServer; d <= ServerToClient; d++ {
		c.dlMu.Lock()
		pk := c.parkedOn[d]
		c.dlMu.Unlock()
		if pk != nil {
			c.unpark(d, pk)
		}
	}
}

// watchErrors returns a channel closed once dir's source socket fails or
// hangs up (see park.Parker.ParkErrors), and the function that stops the
// watch. The channel is nil when the socket cannot be watched.
func (c *conn) watchErrors(dir Direction) (<-chan struct{}, func()) {
	nothing := func() {}
	rc := c.rd[dir].rc
	if rc == nil || !c.parkable(dir) {
		return nil, nothing
	}
	p := c.p
	p.mu.Lock()
	pk := p.parkerLocked()
	p.mu.Unlock()
	if pk == nil {
		return nil, nothing
	}
	failed := make(chan struct{})
	t, err := pk.ParkErrors(rc, func() { close(failed) })
	if err != nil {
		return nil, nothing
	}
	return failed, func() { pk.Unpark(t) }
}
