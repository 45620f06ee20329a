package host

import (
	"net"
	"slices"
	"strings"
)

// ListenerState is the health of one route's listener (Proxy.Listeners).
type ListenerState struct {
	// Route is the route's name; Addr the bound address.
	Route, Addr string
	// Up reports that the listener accepts connections (or waits at its
	// connection cap to accept more). A listener whose accept loop ended
	// with an error is down until an Apply that no longer has the route
	// (or a restart) replaces it.
	Up bool
	// Err says why a listener is down.
	Err error
	// Open is the number of open connections of the listener; AtLimit
	// reports that it has reached the route's MaxConns and new clients
	// wait in the backlog.
	Open    int64
	AtLimit bool
}

// Listeners returns the state of every route's listener, sorted by route
// name: what an admin endpoint's readiness probe needs to know.
func (p *Proxy) Listeners() []ListenerState {
	p.mu.Lock()
	out := make([]ListenerState, 0, len(p.listeners))
	for _, l := range p.listeners {
		rs := l.state.Load()
		s := ListenerState{Route: rs.Name, Addr: l.ln.Addr().String(), Up: true, Open: l.open.Load()}
		s.AtLimit = rs.MaxConns > 0 && s.Open >= int64(rs.MaxConns)
		if e := l.down.Load(); e != nil {
			s.Up, s.Err = false, *e
		}
		out = append(out, s)
		// Routes sharing the address by server name share its listener
		// (and its connection count).
		for _, m := range rs.group[min(1, len(rs.group)):] {
			s.Route = m.Name
			out = append(out, s)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b ListenerState) int { return strings.Compare(a.Route, b.Route) })
	return out
}

// failed records that l's accept loop ended with err: Listeners reports it
// down from now on.
func (l *listener) failed(err error) { l.down.Store(&err) }

// steer checks, for a reuse_port route's new listener, that a tunnel
// stopping while another serves the address will not reset the clients
// still in its accept queue: the kernel must hand them to another listener
// of the SO_REUSEPORT group (Linux's net.ipv4.tcp_migrate_req = 1).
// Otherwise a warning says what to set.
func (p *Proxy) steer(r Route, _ net.Listener) {
	if !r.ReusePort || migratesRequests() {
		return
	}
	p.logger().Warn("reuse_port: a tunnel that stops while another serves this address resets the clients still in its accept queue; set sysctl net.ipv4.tcp_migrate_req=1 so that the kernel hands them over",
		"route", r.Name)
}
