package host

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// RouteStats counts one route's connections, by route name, since the
// Proxy first applied a route of that name (a reload keeps the counts).
// Byte counts include what open connections have moved so far, so a scrape
// sees a long transfer grow rather than jump when it ends.
type RouteStats struct {
	// Route is the route's name.
	Route string
	// Accepted counts the connections accepted; Active is how many are open.
	Accepted, Active int64
	// Errors counts the connections that ended with an error (a reset, a
	// failed dial, an idle timeout, a filter's error, a shutdown's abort);
	// DialFailures and IdleTimeouts count two kinds of them.
	Errors, DialFailures, IdleTimeouts int64
	// Bytes read from and written to each peer. A filter that drops,
	// rewrites or answers makes them differ.
	BytesFromClient, BytesToServer, BytesFromServer, BytesToClient int64
}

// routeCounters are a route name's counters. Connections update them when
// they open and end; open connections' bytes are added when read (Stats).
// The bytes of finished connections are kept in two places so that a read
// adds up exactly, with no connection counted twice or missed: those of the
// goroutine engine's connections (bytes, updated and read under Proxy.mu,
// with Proxy.conns) and those of the event loop's (loopBytes, updated and
// read on the loop, with its open connections).
type routeCounters struct {
	name                               string
	accepted, active                   atomic.Int64
	errors, dialFailures, idleTimeouts atomic.Int64
	bytes                              byteCounts // guarded by Proxy.mu
	loopBytes                          byteCounts // the loop's own
}

// byteCounts are bytes read and written per direction.
type byteCounts struct{ read, written [2]int64 }

func (b *byteCounts) add(read, written [2]int64) {
	for d := range 2 {
		b.read[d] += read[d]
		b.written[d] += written[d]
	}
}

func (b *byteCounts) addTo(s *RouteStats) {
	s.BytesFromClient += b.read[ClientToServer]
	s.BytesToServer += b.written[ClientToServer]
	s.BytesFromServer += b.read[ServerToClient]
	s.BytesToClient += b.written[ServerToClient]
}

// countersLocked returns the counters of the route named name, made on first
// use. Called with p.mu held.
func (p *Proxy) countersLocked(name string) *routeCounters {
	if p.counters == nil {
		p.counters = map[string]*routeCounters{}
	}
	rc := p.counters[name]
	if rc == nil {
		rc = &routeCounters{name: name}
		p.counters[name] = rc
	}
	return rc
}

// Stats returns every route's counters, sorted by route name.
func (p *Proxy) Stats() []RouteStats {
	p.mu.Lock()
	out := make([]RouteStats, 0, len(p.counters))
	index := make(map[*routeCounters]int, len(p.counters))
	for _, rc := range p.counters {
		index[rc] = len(out)
		s := RouteStats{
			Route:        rc.name,
			Accepted:     rc.accepted.Load(),
			Active:       rc.active.Load(),
			Errors:       rc.errors.Load(),
			DialFailures: rc.dialFailures.Load(),
			IdleTimeouts: rc.idleTimeouts.Load(),
		}
		rc.bytes.addTo(&s)
		out = append(out, s)
	}
	for c := range p.conns {
		var b byteCounts
		for d := range 2 {
			b.read[d], b.written[d] = c.read[d].Load(), c.written[d].Load()
		}
		b.addTo(&out[index[c.rs.ctr]])
	}
	p.mu.Unlock()
	p.eachLoopConn(func() {
		for rc, i := range index {
			rc.loopBytes.addTo(&out[i])
		}
	}, func(rc *routeCounters, b byteCounts) {
		if i, ok := index[rc]; ok {
			b.addTo(&out[i])
		}
	})
	slices.SortFunc(out, func(a, b RouteStats) int { return strings.Compare(a.Route, b.Route) })
	return out
}

// ConnStats describes one open connection.
type ConnStats struct {
	// ID is the connection's number in the log (conn=ID).
	ID uint64
	// Route, Client and Target are the route's name, the client's address
	// and the target's (empty until a late-dial route chose one).
	Route, Client, Target string
	// Start is when the connection was accepted.
	Start time.Time
	// Bytes read from and written to each peer so far.
	BytesFromClient, BytesToServer, BytesFromServer, BytesToClient int64
}

// Connections returns the open connections, oldest first.
func (p *Proxy) Connections() []ConnStats {
	p.mu.Lock()
	out := make([]ConnStats, 0, len(p.conns))
	for c := range p.conns {
		cs := ConnStats{ID: c.info.ID, Route: c.rs.Name, Client: c.info.Client.String(), Start: c.start,
			BytesFromClient: c.read[ClientToServer].Load(), BytesToServer: c.written[ClientToServer].Load(),
			BytesFromServer: c.read[ServerToClient].Load(), BytesToClient: c.written[ServerToClient].Load()}
		cs.Target = c.rs.Target
		if t := c.target.Load(); t != nil {
			cs.Target = *t // chosen by a filter (late dial); c.ch is not locked here
		}
		out = append(out, cs)
	}
	p.mu.Unlock()
	p.eachLoopConnStats(func(cs ConnStats) { out = append(out, cs) })
	slices.SortFunc(out, func(a, b ConnStats) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
