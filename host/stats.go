package host

import (
	"cmp"
	"context"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
	"github.com/tunnelwasm/tunnel/internal/histo"
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
	// failed dial, an idle timeout, a filter's error, a failed TLS
	// handshake or a name no route serves, a shutdown's abort);
	// DialFailures and IdleTimeouts count two kinds of them.
	Errors, DialFailures, IdleTimeouts int64
	// Bytes read from and written to each peer. A filter that drops,
	// rewrites or answers makes them differ.
	BytesFromClient, BytesToServer, BytesFromServer, BytesToClient int64
	// Closed counts the finished connections by close reason, as the
	// close log line's reason= names them ("client_eof", "server_eof",
	// "filter_close", "filter_error", "refused", "dial_failed",
	// "idle_timeout", "reset", "shutdown", ...); every name is present.
	Closed map[string]int64
	// Rejected counts the connections turned away by reason: "limit",
	// "denied" (a filter refused it when it opened, close reason
	// "refused", or closed it before its target was dialled, close reason
	// "filter_close"), "tls" (a failed handshake, or a ClientHello that
	// could not be read), "no_route" (no route for its SNI name, or for a
	// client that does not speak TLS); every name is present. They are
	// counted in Closed too. On an address routes share by server name,
	// a connection no route takes counts under the address's first route.
	Rejected map[string]int64
	// Duration is the lifetime of finished connections, accept to close.
	Duration Histogram
	// Connect is the time the dial of the target took, for the dials
	// that succeeded.
	Connect Histogram
}

// Histogram is a snapshot of a duration histogram (RouteStats.Duration,
// RouteStats.Connect). Bounds are the buckets' upper bounds (shared: do
// not modify); Counts are the observations per bucket, not cumulative,
// len(Bounds)+1 of them, the last above every bound; Count is their sum
// and Sum the sum of the observed durations (a time.Duration).
type Histogram = histo.Snapshot

// numReasons bounds the close reasons (reason.go), for counting them.
const numReasons = closeReason(len(reasonNames))

// rejectReason is why a connection was turned away (RouteStats.Rejected).
type rejectReason uint8

const (
	rejectLimit   rejectReason = iota // over a connection limit
	rejectDenied                      // a filter refused it when it opened, or closed it before the dial
	rejectTLS                         // the TLS handshake failed
	rejectNoRoute                     // no route for the name the client asked for (SNI)
	numRejectReasons
)

var rejectNames = [numRejectReasons]string{
	rejectLimit:   "limit",
	rejectDenied:  "denied",
	rejectTLS:     "tls",
	rejectNoRoute: "no_route",
}

func (r rejectReason) String() string { return rejectNames[r] }

// rejectedAs maps the close reasons that are rejections to their reject
// reason, plus one (0: not a rejection); made from the names, so a close
// reason named like a reject reason ("tls", "no_route") counts as one, and
// "refused" (a filter refused the connection when it opened) as "denied".
var rejectedAs = func() (m [numReasons]uint8) {
	for r := range numReasons {
		for j, name := range rejectNames {
			if name == r.String() || (r == reasonRefused && rejectReason(j) == rejectDenied) {
				m[r] = uint8(j) + 1
			}
		}
	}
	return m
}()

// reject counts a connection turned away for reason r, for an engine that
// turns one away without closing it with a close reason of that name (those
// are counted by ended).
func (rc *routeCounters) reject(r rejectReason) { rc.rejected[r].Add(1) }

// ended counts a finished connection of the goroutine engine or the loop:
// its lifetime and its close reason (and, for a rejection, its reject
// reason). Atomic adds only: nothing locks or allocates.
func (rc *routeCounters) ended(start time.Time, r closeReason) {
	rc.duration.Observe(time.Since(start))
	rc.closed[r].Add(1)
	if j := rejectedAs[r]; j != 0 {
		rc.rejected[j-1].Add(1)
	}
}

// loopEnded is ended for a connection of an event loop, whose dial time,
// failed dial or idle timeout come with its figures; it is no longer
// active.
func (rc *routeCounters) loopEnded(start time.Time, r closeReason, st evloop.Stats) {
	rc.active.Add(-1)
	switch st.Reason {
	case evloop.DialFailed:
		rc.dialFailures.Add(1)
	case evloop.IdleTimeout:
		rc.idleTimeouts.Add(1)
	}
	if st.Connected {
		rc.connect.Observe(st.ConnectTime)
	}
	rc.ended(start, r)
}

// dial dials target with d, counting the time a successful dial took.
func (rc *routeCounters) dial(ctx context.Context, d *net.Dialer, target string) (net.Conn, error) {
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", target)
	if err == nil {
		rc.connect.Observe(time.Since(start))
	}
	return c, err
}

// routeCounters are a route name's counters. Connections update them when
// they open and end; open connections' bytes are added when read (Stats).
// The bytes of finished connections are kept in two places so that a read
// adds up exactly, with no connection counted twice or missed: those of the
// goroutine engine's connections (bytes, updated and read under Proxy.mu,
// with Proxy.conns) and those of the event loops' (loopBytes, one per loop,
// updated and read on that loop, with its open connections).
type routeCounters struct {
	name                               string
	accepted, active                   atomic.Int64
	errors, dialFailures, idleTimeouts atomic.Int64
	bytes                              byteCounts           // guarded by Proxy.mu
	loopBytes                          [maxLoops]byteCounts // each loop's own, by its index
	closed                             [numReasons]atomic.Int64
	rejected                           [numRejectReasons]atomic.Int64
	duration, connect                  *histo.Histogram
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
		rc = &routeCounters{name: name, duration: histo.New(histo.ConnBounds), connect: histo.New(histo.DialBounds)}
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
			Closed:       make(map[string]int64, numReasons-1),
			Rejected:     make(map[string]int64, numRejectReasons),
			Duration:     rc.duration.Snapshot(),
			Connect:      rc.connect.Snapshot(),
		}
		for r := reasonUnset + 1; r < numReasons; r++ {
			s.Closed[r.String()] = rc.closed[r].Load()
		}
		for r := range numRejectReasons {
			s.Rejected[r.String()] = rc.rejected[r].Load()
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
	p.eachLoopConn(func(loop int) {
		for rc, i := range index {
			rc.loopBytes[loop].addTo(&out[i])
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
