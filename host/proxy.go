package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/park"
	"github.com/tunnelwasm/tunnel/internal/addr"
)

// Defaults of [Route] fields left zero.
const (
	// DefaultDialTimeout bounds the dial of the target.
	DefaultDialTimeout = 10 * time.Second
	// DefaultHoldLimit bounds the bytes a LateDial route holds for its target.
	DefaultHoldLimit = 64 << 10
	// DefaultTargetWait bounds how long a LateDial route waits for its target.
	DefaultTargetWait = 10 * time.Second
	// DefaultHandshakeTimeout bounds a TLS handshake, a ClientHello read
	// or a PROXY header read when Route.HandshakeTimeout is zero.
	DefaultHandshakeTimeout = 10 * time.Second
)

// dialTimeout is DialTimeout or its default.
func (r *Route) dialTimeout() time.Duration {
	if r.DialTimeout > 0 {
		return r.DialTimeout
	}
	return DefaultDialTimeout
}

// holdLimit is HoldLimit or its default.
func (r *Route) holdLimit() int {
	if r.HoldLimit > 0 {
		return r.HoldLimit
	}
	return DefaultHoldLimit
}

// Route is one listener and where its connections go.
type Route struct {
	// Name identifies the route in logs and to plugins. Required, unique.
	Name string
	// Listen is the address to accept on, host:port (":0" picks a free port).
	// Apply keeps a listener across reloads when Listen is the same string
	// (a port-0 address: the same string and Name), or exactly the address
	// the listener is bound to (the one Proxy.Addr returned for a ":0"
	// route, no longer listed as ":0"). The same port spelled otherwise
	// ("localhost:8080" for "127.0.0.1:8080") binds anew, which fails with
	// "address already in use" while the old one is bound.
	Listen string
	// Target is the address dialled for every accepted connection, host:port.
	Target string
	// DialTimeout bounds the dial of Target; zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleTimeout closes a connection after this long with no bytes in
	// either direction; zero means never. A route with an idle timeout
	// copies in user space instead of splicing, to see the activity.
	IdleTimeout time.Duration
	// MaxConns caps the route's open connections; zero means no cap. At the
	// cap the route stops accepting (clients wait in the kernel's backlog).
	MaxConns int
	// ReusePort binds the listen address with SO_REUSEPORT, so another
	// process (a new version of the tunnel, say) can bind it at the same
	// time and the kernel spreads new connections between the two: start
	// the new one, then stop the old one gracefully, and no client is
	// refused. Every process sharing the port must set it.
	ReusePort bool
	// LateDial lets the chain choose the target: the dial waits until a
	// filter calls [Stream.SetTarget] (protocol or SNI routing), and what
	// the chain sends toward the server until then is held. Target may be
	// empty; when set, it is only what logs show before the choice.
	LateDial bool
	// HoldLimit bounds the bytes held toward the server while a LateDial
	// route waits for its target; past it the connection is closed with an
	// error. Zero means DefaultHoldLimit.
	HoldLimit int
	// TargetWait bounds how long a LateDial route waits for a filter to
	// choose the target; then the connection is closed with an error. Zero
	// means DefaultTargetWait.
	TargetWait time.Duration
	// TLS, when set, makes the route terminate TLS: the handshake runs
	// before the chain, and filters, the dump and the capture see plaintext.
	// The config is used as given (certificates, client verification,
	// ALPN); a reload gives a new Route and new connections use its config
	// while open ones keep theirs. Such a route is never spliced. A panic
	// in one of the config's callbacks (GetCertificate, VerifyConnection,
	// ...) fails that connection's handshake (Reason tls), as
	// UpstreamTLS's do the dial.
	TLS *tls.Config
	// WireTap, when set on a route that terminates TLS, is given each
	// connection's client socket before the handshake and returns what the
	// TLS session reads and writes through instead: a wrapper that sees the
	// ciphertext as it crossed the wire (a capture's client leg, with the
	// session keys from tls.Config.KeyLogWriter). It is called on the
	// connection's goroutine; the wrapper's Read and Write run on the pumps
	// (one reader, one writer at a time) and must pass every call through.
	// Teardown closes the socket itself, never the wrapper. A WireTap that
	// panics or returns nil fails that connection (Reason filter_error).
	// Apply refuses a WireTap on a route without TLS.
	WireTap func(info *ConnInfo, c net.Conn) net.Conn
	// UpstreamTLS, when set, makes the route originate TLS toward the
	// target; ServerName defaults to the target's host.
	UpstreamTLS *tls.Config
	// HandshakeTimeout bounds the TLS handshake with the client (TLS
	// routes) and the reading of the ClientHello (ServerNames routes) and
	// of a PROXY header (AcceptProxy). Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ServerNames routes by the TLS ClientHello's server name without
	// terminating: several routes may share one Listen address when each
	// gives ServerNames (exact names, or "*.example.com" for any one label
	// in front), and at most one of them gives "*" as its default. The
	// ClientHello is read (bounded by size and HandshakeTimeout), matched,
	// and replayed to the chosen route's target byte for byte; a name no
	// route matches gets a TLS unrecognized_name alert.
	ServerNames []string
	// AcceptProxy reads a PROXY protocol header (v1 or v2) from each client
	// before anything else; ConnInfo.Client is then the address it names.
	// Only peers in TrustedProxies may send one (required when AcceptProxy
	// is set); a connection from elsewhere, or with a malformed header, is
	// refused and logged.
	AcceptProxy bool
	// TrustedProxies lists the networks whose PROXY headers are believed.
	// It is used only with AcceptProxy; each must be a valid prefix.
	TrustedProxies []netip.Prefix
	// Chain is the ordered list of hooks. On the client -> server stream the
	// chain runs first to last; on server -> client it runs last to first, so
	// the first link is always the one nearest the client.
	Chain []Link
	// OnRelease, if set, is called once (from any goroutine, without locks
	// held) when this applied version of the route is no longer used: a
	// later Apply replaced or removed it, or Shutdown/Close ran, and its
	// last connection has finished. Owners close the hooks they made there
	// (e.g. plugins): the Proxy closes nothing it did not create. When no
	// connection is open it runs inside that Apply, Shutdown or Close call,
	// after its locks are released, so the call returns after it; else on
	// the goroutine of the last connection, before Shutdown counts that
	// connection as finished. It may call Apply, and Shutdown with a
	// context that ends (one that never ends would wait for the very
	// connection that runs it). A panic is recovered and logged.
	OnRelease func()
}

// Proxy serves a set of routes. The zero value is ready to use: call Apply to
// start listening, Shutdown or Close to stop. A Proxy must not be copied after
// first use.
type Proxy struct {
	// Logger receives the operational log (listeners, connections, errors).
	// Nil means slog.Default(). Its handler runs on the goroutine that
	// forwards the connection it logs about, which may be the event loop
	// of every connection of a route: a handler that blocks (writing to a
	// pipe nobody reads) stalls them all. Give it an output that never
	// blocks, such as a buffer that drops what does not fit (the tunnel
	// command's stderr is one).
	Logger *slog.Logger
	// AccessLog, when set, receives the "connection closed" record of every
	// connection (who, where, bytes each way, duration, reason, tags)
	// instead of Logger: give it a JSON handler on a file for an access log.
	// What Logger's doc says of blocking holds for it too.
	AccessLog *slog.Logger

	applyMu   sync.Mutex // one Apply at a time, from its first bind to its last listener stopped
	mu        sync.Mutex
	listeners map[string]*listener // by listenKey
	conns     map[*conn]struct{}
	awake     map[*conn]struct{} // conns with a pump not parked: what sweeps look at
	connWG    liveGroup
	nextID    atomic.Uint64
	closed    bool
	hardCtx   context.Context // cancelled when the grace period ends: abort dials
	hardStop  context.CancelFunc

	// The sweeper: a timer, armed while connections are open, whose
	// callback moves idle filtered pumps to fresh goroutines (conn.sweep).
	sweepTimer *time.Timer
	sweeping   bool                   // the timer is armed or its callback is running
	sweepBuf   []*conn                // the callback's own
	noSweep    bool                   // tests: never sweep, so a pump that waits wrongly stays stuck
	sweepHook  atomic.Pointer[func()] // tests: runs after every sweep

	// The event loops of plain routes (loop_linux.go; how many: loopsFor),
	// started with the first plain listener and closed by Shutdown; each
	// polls every plain listener.
	loops     []*eventLoop
	noLoop    bool // the loops could not start: accept on goroutines
	loopCount int  // tests: how many loops to start (0: loopsFor's choice)
	// The loops of inline routes (inline_linux.go), one per route state:
	// Shutdown aborts their connections.
	rloops map[*eventLoop]struct{}

	// The Parker of idle pumps (park.go), started with the first park and
	// closed by Shutdown.
	parker *park.Parker
	noPark bool // the Parker could not start or is closed: pumps move instead

	counters map[string]*routeCounters // by route name; see Stats
}

// sweepInterval is how often idle connections are swept: a filtered
// connection idle for one to two intervals parks its pumps (park.go) and
// holds no goroutine. Short, because what an idle connection costs is
// mostly the stacks its pumps grew while active, held until it parks:
// 5,000 connections opened one after the other through the no-op plugin
// took 15.3 KiB each with 250 ms, 9.3 KiB with 100 ms and 5.7 KiB with
// 50 ms (VmRSS); the bench's 10,000 opened 32 at a time, 6.9 KiB with 50 ms
// and 5.8 KiB with 25 ms. A sweep looks only at the connections with a
// pump awake (Proxy.awake): 4,000 parked ones cost it nothing, 4,000 awake
// ones about 200 µs. A connection busier than the interval never parks.
const sweepInterval = 25 * time.Millisecond

// startSweepLocked arms the sweeper if it is not. Called with p.mu held.
func (p *Proxy) startSweepLocked() {
	if p.sweeping || p.noSweep {
		return
	}
	p.parkerLocked()
	p.sweeping = true
	if p.sweepTimer == nil {
		p.sweepTimer = time.AfterFunc(sweepInterval, p.sweep)
	} else {
		p.sweepTimer.Reset(sweepInterval)
	}
}

// sweep is the sweeper's timer callback. It re-arms itself while connections
// are open, so no goroutine or timer outlives the last connection.
func (p *Proxy) sweep() {
	p.mu.Lock()
	cs := p.sweepBuf[:0]
	for c := range p.awake {
		cs = append(cs, c)
	}
	parks := p.parker != nil
	p.mu.Unlock()
	for _, c := range cs {
		c.sweep(parks)
	}
	clear(cs)
	if h := p.sweepHook.Load(); h != nil {
		(*h)() // before re-arming: sweeps never overlap
	}
	p.mu.Lock()
	p.sweepBuf = cs[:0]
	if len(p.conns) > 0 {
		p.sweepTimer.Reset(sweepInterval)
	} else {
		p.sweeping = false // the next connection arms it again
	}
	p.mu.Unlock()
}

// routeState is one applied version of a route. Connections keep the state
// they were accepted with; refs counts the owner (the listener, while the
// state is current) and every open connection.
type routeState struct {
	Route
	refs   atomic.Int64
	ctr    *routeCounters // the counters of the route's name
	chains [2][]int       // per direction: indexes into Chain, in flow order
	next   [][2]int       // per link and direction: position in chains[dir] after that link
	// group lists the routes sharing this route's listen address, chosen
	// among by the ClientHello's server name (Route.ServerNames), in
	// configuration order; the first is the listener's. Nil for a route
	// with a listener of its own and no ServerNames.
	group []*routeState
	// loop is the route's own event loop when its chain is inline
	// (inline_linux.go); nil otherwise. Closed by released.
	loop *eventLoop
}

// listener accepts a route's connections: on the event loop (lh set; see
// loop_linux.go) or on a goroutine of its own (serve).
type listener struct {
	p      *Proxy
	ln     *net.TCPListener                // closed at once when the loop accepts
	lh     atomic.Pointer[[]*loopListener] // the loops' sides of the listener, or nil
	state  atomic.Pointer[routeState]
	done   chan struct{} // closed when the listener stops accepting
	exit   chan struct{} // closed when the accept loop has returned
	slot   chan struct{} // signalled when a connection of this listener ends
	open   atomic.Int64
	paused atomic.Bool           // the loop stopped accepting at MaxConns (Admit)
	down   atomic.Pointer[error] // why the accept loop ended, if it failed (listeners.go)
}

// closeLogger is where connections' close records go.
func (p *Proxy) closeLogger() *slog.Logger {
	if p.AccessLog != nil {
		return p.AccessLog
	}
	return p.logger()
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Proxy) init() {
	if p.listeners == nil {
		p.listeners = map[string]*listener{}
		p.conns = map[*conn]struct{}{}
		p.awake = map[*conn]struct{}{}
		p.hardCtx, p.hardStop = context.WithCancel(context.Background())
	}
}

// validateRoutes checks a configuration without binding anything: names and
// addresses present and well formed, no two routes on one name or listen
// address, no routes that forward to each other, hooks not nil. Every
// problem is reported, joined.
func validateRoutes(routes []Route) error {
	var errs []error
	names := map[string]bool{}
	listens := map[string]Route{}
	for i, r := range routes {
		label := fmt.Sprintf("route %q", r.Name)
		if r.Name == "" {
			label = fmt.Sprintf("route #%d", i+1)
			errs = append(errs, fmt.Errorf("%s: name is empty", label))
		} else if names[r.Name] {
			errs = append(errs, fmt.Errorf("%s: name used by two routes", label))
		}
		names[r.Name] = true
		if err := addr.Check(r.Listen); err != nil {
			errs = append(errs, fmt.Errorf("%s: listen: %w", label, err))
		} else if other, dup := listens[listenKey(r)]; dup && other.Name != r.Name && (len(r.ServerNames) == 0 || len(other.ServerNames) == 0) {
			errs = append(errs, fmt.Errorf("%s: listen address %s is already used by route %q (routes share an address only when each gives ServerNames)", label, r.Listen, other.Name))
		} else if !dup {
			listens[listenKey(r)] = r
		}
		errs = append(errs, checkServerNames(label, r, routes[:i])...)
		if r.AcceptProxy && len(r.TrustedProxies) == 0 {
			errs = append(errs, fmt.Errorf("%s: AcceptProxy needs TrustedProxies, the networks trusted to send PROXY headers", label))
		}
		if r.WireTap != nil && r.TLS == nil {
			errs = append(errs, fmt.Errorf("%s: WireTap is set but TLS is not: it taps the TLS a route terminates (on a plaintext route, a Link's filter sees every byte)", label))
		}
		for j, pfx := range r.TrustedProxies {
			if !pfx.IsValid() {
				errs = append(errs, fmt.Errorf("%s: trusted proxy network #%d is not a valid prefix", label, j+1))
			}
		}
		if r.Target != "" || !r.LateDial {
			if err := addr.Check(r.Target); err != nil {
				errs = append(errs, fmt.Errorf("%s: target: %w", label, err))
			} else if addr.Loops(r.Listen, r.Target) {
				errs = append(errs, fmt.Errorf("%s: target %s is the route's own listen address %s: every connection would dial the tunnel itself, until no file descriptor is left", label, r.Target, r.Listen))
			}
		}
		if neg := negativeFields(&r); neg != "" {
			errs = append(errs, fmt.Errorf("%s: %s must not be negative", label, neg))
		}
		for j, l := range r.Chain {
			if f, ok := l.Hook.(ChunkFunc); l.Hook == nil || ok && f == nil {
				errs = append(errs, fmt.Errorf("%s: link %d (%q) has no hook", label, j+1, l.Name))
			}
			if l.Directions > OnlyServerToClient {
				errs = append(errs, fmt.Errorf("%s: link %d (%q) has invalid directions %d", label, j+1, l.Name, l.Directions))
			}
		}
	}
	hops := make([]addr.Hop, len(routes))
	for i, r := range routes {
		hops[i] = addr.Hop{Listen: r.Listen, Target: r.Target, LateDial: r.LateDial, ServerNames: r.ServerNames, TLS: r.TLS != nil}
		if u := r.UpstreamTLS; u != nil {
			hops[i].UpstreamTLS, hops[i].UpstreamServerName = true, u.ServerName
		}
	}
	if c := addr.Cycle(hops); c != nil {
		errs = append(errs, fmt.Errorf("routes forward to each other: %s; %s would go round through the tunnel until no file descriptor is left",
			addr.CyclePath(hops, c, func(i int) string { return routes[i].Name }), c.Who()))
	}
	return errors.Join(errs...)
}

// boundAddrKeysLocked finds, for the routes that name no listener by their
// listenKey, a listener already bound to exactly their Listen address (as
// Addr reported it for a ":0" route, say) that no route of the new set
// names by its own key: the listener is kept under the new key instead of
// a second bind of the same address failing. It returns new key → old key.
// Called with p.mu held.
func (p *Proxy) boundAddrKeysLocked(routes []Route) map[string]string {
	named := map[string]bool{}
	for _, r := range routes {
		named[listenKey(r)] = true
	}
	var rekey map[string]string
	taken := map[string]bool{}
	for _, r := range routes {
		key := listenKey(r)
		if _, ok := p.listeners[key]; ok || rekey[key] != "" {
			continue
		}
		for was, l := range p.listeners {
			if !named[was] && !taken[was] && l.ln.Addr().String() == r.Listen {
				if rekey == nil {
					rekey = map[string]string{}
				}
				rekey[key], taken[was] = was, true
				break
			}
		}
	}
	return rekey
}

// listenKey identifies a route's listener across Apply calls: its listen
// address, except that every port-0 address is a listener of its own, kept
// per route name.
func listenKey(r Route) string {
	if _, port, err := net.SplitHostPort(r.Listen); err == nil && port == "0" {
		return r.Listen + " route " + r.Name
	}
	return r.Listen
}

func newRouteState(r Route) *routeState {
	rs := &routeState{Route: r}
	rs.Chain = append([]Link(nil), r.Chain...)
	n := len(rs.Chain)
	for i := 0; i < n; i++ {
		if rs.Chain[i].Directions.Has(ClientToServer) {
			rs.chains[ClientToServer] = append(rs.chains[ClientToServer], i)
		}
	}
	for i := n - 1; i >= 0; i-- {
		if rs.Chain[i].Directions.Has(ServerToClient) {
			rs.chains[ServerToClient] = append(rs.chains[ServerToClient], i)
		}
	}
	rs.next = make([][2]int, n)
	for i := 0; i < n; i++ {
		for d := ClientToServer; d <= ServerToClient; d++ {
			pos := len(rs.chains[d])
			for k, j := range rs.chains[d] {
				if (d == ClientToServer && j > i) || (d == ServerToClient && j < i) {
					pos = k
					break
				}
			}
			rs.next[i][d] = pos
		}
	}
	rs.refs.Store(1)
	return rs
}

// releaseGroup drops the owner's reference to a listener's route state.
// The first route of a shared address holds the owner's reference of the
// others (release drops them with its last one), so a connection that
// holds the first while it reads its ClientHello can always take the route
// it chooses, whatever reloads happen meanwhile.
func (p *Proxy) releaseGroup(rs *routeState) { p.release(rs) }

// release drops one reference to rs; the last one calls its OnRelease, and
// for the first route of a shared address releases the others.
func (p *Proxy) release(rs *routeState) {
	if rs.refs.Add(-1) != 0 {
		return
	}
	p.released(rs)
}

// released ends what rs holds once its last reference is gone: its loop,
// then its owner's OnRelease. Never called on an event loop, nor with a
// lock of the Proxy held.
func (p *Proxy) released(rs *routeState) {
	p.closeRouteLoop(rs)
	if rs.OnRelease != nil {
		p.callOnRelease(rs)
	}
	if len(rs.group) > 0 && rs.group[0] == rs {
		for _, m := range rs.group[1:] {
			p.release(m)
		}
	}
}

// callOnRelease runs rs's OnRelease, recovering a panic: it is logged,
// and the routes released with it are still released.
func (p *Proxy) callOnRelease(rs *routeState) {
	defer func() {
		if r := recover(); r != nil {
			p.logger().Error("panic in a route's OnRelease", "route", rs.Name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	rs.OnRelease()
}

// Apply makes routes the running configuration, atomically: it validates
// them, binds every new listen address, and only then swaps. A route whose
// listen address is already bound keeps its listener, so no connection is
// refused during the swap; routes that disappear stop accepting. Connections
// already open finish with the route settings and hooks they started with.
// On error nothing changes. Concurrent calls apply one after the other.
func (p *Proxy) Apply(routes []Route) error {
	if err := validateRoutes(routes); err != nil {
		return err
	}
	old, err := p.apply(routes)
	// The versions replaced are released once no lock is held: an
	// OnRelease may call Apply or Shutdown.
	for _, rs := range old {
		p.releaseGroup(rs)
	}
	return err
}

// apply swaps routes in and returns the route versions that are no longer
// served, for Apply to release.
func (p *Proxy) apply(routes []Route) (old []*routeState, err error) {
	// The listeners an Apply drops are closed after p.mu is released, but
	// under applyMu: an Apply in between would find their addresses still
	// bound.
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.mu.Lock()
	p.init()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("proxy is shut down")
	}
	rekey := p.boundAddrKeysLocked(routes)
	// Bind what is new first; undo on failure.
	fresh := map[string]*net.TCPListener{}
	var bindErr error
	for _, r := range routes {
		if _, ok := p.listeners[listenKey(r)]; ok {
			continue
		}
		if _, ok := rekey[listenKey(r)]; ok {
			continue // an existing listener, bound to this address
		}
		if _, ok := fresh[listenKey(r)]; ok {
			continue // a route sharing the address by server name
		}
		lc := net.ListenConfig{Control: listenControl(r.ReusePort)}
		ln, err := lc.Listen(context.Background(), "tcp", r.Listen)
		if err != nil {
			bindErr = fmt.Errorf("route %q: cannot listen on %s: %w", r.Name, r.Listen, err)
			break
		}
		p.steer(r, ln) // reuse_port: warn if a stop would reset queued clients (listeners.go)
		fresh[listenKey(r)] = ln.(*net.TCPListener)
	}
	if bindErr != nil {
		for _, ln := range fresh {
			ln.Close()
		}
		p.mu.Unlock()
		return nil, bindErr
	}
	for key, was := range rekey {
		p.listeners[key] = p.listeners[was]
		delete(p.listeners, was)
	}
	var stopped []*listener
	keep := map[string]bool{}
	groups := map[string][]*routeState{}
	var order []string
	for _, r := range routes {
		key := listenKey(r)
		rs := newRouteState(r)
		rs.ctr = p.countersLocked(r.Name)
		p.startRouteLoopLocked(rs)
		if groups[key] == nil {
			order = append(order, key)
		}
		groups[key] = append(groups[key], rs)
	}
	for _, key := range order {
		g := groups[key]
		rs, r := g[0], g[0].Route
		if len(g) > 1 || len(rs.ServerNames) > 0 {
			for _, m := range g {
				m.group = g
			}
		}
		keep[key] = true
		if l, ok := p.listeners[key]; ok {
			old = append(old, l.state.Swap(rs))
			l.wake() // a raised MaxConns applies at once
			continue
		}
		l := &listener{p: p, ln: fresh[key], done: make(chan struct{}), exit: make(chan struct{}), slot: make(chan struct{}, 1)}
		l.state.Store(rs)
		p.listeners[key] = l
		for _, m := range g {
			p.logger().Info("listening", "route", m.Name, "addr", l.ln.Addr().String(), "target", m.Target)
		}
		if _, plain := rs.loopTarget(); plain || rs.loop != nil {
			if loops := p.loopsLocked(); loops != nil {
				if err := l.serveOnLoops(loops); err == nil {
					continue
				} else {
					p.logger().Warn("event loop refused the listener; accepting on a goroutine", "route", r.Name, "err", err)
				}
			}
		}
		go l.serve()
	}
	for addr, l := range p.listeners {
		if !keep[addr] {
			delete(p.listeners, addr)
			stopped = append(stopped, l)
		}
	}
	p.mu.Unlock()
	for _, l := range stopped {
		l.stop()
		p.logger().Info("stopped listening", "route", l.state.Load().Name, "addr", l.ln.Addr().String())
		old = append(old, l.state.Load())
	}
	return old, nil
}

// Addr returns the bound address of the route named name, or nil when no
// listener serves it (never applied, removed, or Shutdown or Close called,
// even while connections are still being served).
func (p *Proxy) Addr(name string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		rs := l.state.Load()
		if rs.Name == name {
			return l.ln.Addr()
		}
		for _, m := range rs.group {
			if m.Name == name {
				return l.ln.Addr()
			}
		}
	}
	return nil
}

// Shutdown stops accepting on every route and waits for open connections to
// finish. When ctx ends first, the remaining connections are reset (their
// peers see a cut stream, never an orderly end) and ctx's error is
// returned, at most 100 ms after ctx ended whatever peers and filters do:
// that long, aborted connections get to finish a filter call, and one
// still inside it then is abandoned (its sockets reset, it ends when the
// call returns). The connections keep their whole grace period up to ctx's end.
// Once Shutdown has been called, Apply fails.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.init()
	p.closed = true
	ls := p.listeners
	p.listeners = map[string]*listener{}
	p.mu.Unlock()
	for _, l := range ls {
		l.stop()
		p.releaseGroup(l.state.Load())
	}
	done := make(chan struct{})
	go func() { p.connWG.Wait(); close(done) }()
	defer p.closeLoop()
	defer p.closeParker()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if p.connWG.Len() == 0 {
			return nil // nothing was open (a grace of 0 with no connection)
		}
	}
	p.abortAll()
	// Aborting closes every socket, which wakes every pump at once; only a
	// connection inside a filter call (a guest that cannot be interrupted,
	// a Go filter that blocks) can still be running past abandonWait. It
	// is abandoned: it finishes when the call returns, if ever.
	t := time.NewTimer(abandonWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.mu.Lock()
		n := len(p.conns)
		p.mu.Unlock()
		p.logger().Warn("shutdown: connections abandoned inside a filter call", "conns", n)
	}
	return ctx.Err()
}

// abandonWait is how long Shutdown waits, once its context is done and the
// connections are aborted, for them to finish before it returns anyway.
const abandonWait = 100 * time.Millisecond

// Close stops every listener and resets every connection at once: it is
// Shutdown with a context already done, so it returns within about 100 ms
// even while a filter call blocks. It returns nil (it is not an error that
// connections were open), also when called again.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// abortAll aborts every open connection. Each abort only closes sockets,
// so one stuck connection cannot hold up the others.
func (p *Proxy) abortAll() {
	p.mu.Lock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	cause := errors.New("proxy shut down")
	for _, c := range cs {
		c.setReason(reasonShutdown)
		c.abort(cause)
	}
	p.abortLoop(cause)
	p.abortRouteLoops(cause)
	p.hardStop() // and the dials of connections accepted meanwhile
}

func (l *listener) stop() {
	if hs := l.lh.Load(); hs != nil {
		for _, h := range *hs {
			h.Close()
		}
	}
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.ln.Close()
	<-l.exit
}

func (l *listener) serve() {
	defer close(l.exit)
	var backoff time.Duration
	for {
		// Respect the connection cap before accepting: clients wait in the backlog.
		for {
			rs := l.state.Load()
			if rs.MaxConns == 0 || l.open.Load() < int64(rs.MaxConns) {
				break
			}
			select {
			case <-l.slot:
			case <-l.done:
				return
			}
		}
		c, err := l.ln.AcceptTCP()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: back off, like net/http.
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff *= 2; backoff > time.Second {
					backoff = time.Second
				}
				l.p.logger().Error("accept failed; retrying", "addr", l.ln.Addr().String(), "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-l.done:
					return
				}
				continue
			}
			l.p.logger().Error("accept failed; listener stopped", "addr", l.ln.Addr().String(), "err", err)
			l.failed(err)
			return
		}
		backoff = 0
		rs := l.acquire()
		l.open.Add(1)
		l.p.startConn(l, rs, c)
	}
}

// acquire returns the current route state with a reference taken for a new
// connection. A state whose last reference is already gone (swapped out by
// Apply a moment ago) is skipped for the one that replaced it.
func (l *listener) acquire() *routeState {
	for {
		rs := l.state.Load()
		n := rs.refs.Load()
		if n > 0 && rs.refs.CompareAndSwap(n, n+1) {
			return rs
		}
	}
}

func (l *listener) connDone() {
	l.open.Add(-1)
	l.wake()
}

// wake makes an accept loop waiting at the connection cap check it again.
func (l *listener) wake() {
	if hs := l.lh.Load(); hs != nil {
		if l.paused.CompareAndSwap(true, false) {
			for _, h := range *hs {
				h.Resume() // the loop asks Admit again
			}
		}
		return
	}
	select {
	case l.slot <- struct{}{}:
	default:
	}
}

// negativeFields names the fields of r that must not be negative and are,
// with their values ("MaxConns -5, DialTimeout -1s"), or returns "".
func negativeFields(r *Route) string {
	var b strings.Builder
	add := func(name string, bad bool, v any) {
		if !bad {
			return
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %v", name, v)
	}
	add("DialTimeout", r.DialTimeout < 0, r.DialTimeout)
	add("IdleTimeout", r.IdleTimeout < 0, r.IdleTimeout)
	add("HandshakeTimeout", r.HandshakeTimeout < 0, r.HandshakeTimeout)
	add("TargetWait", r.TargetWait < 0, r.TargetWait)
	add("MaxConns", r.MaxConns < 0, r.MaxConns)
	add("HoldLimit", r.HoldLimit < 0, r.HoldLimit)
	return b.String()
}

// liveGroup is a WaitGroup that also tells how many it waits for.
type liveGroup struct {
	wg sync.WaitGroup
	n  atomic.Int64
}

func (g *liveGroup) Add(d int)  { g.n.Add(int64(d)); g.wg.Add(d) }
func (g *liveGroup) Done()      { g.n.Add(-1); g.wg.Done() }
func (g *liveGroup) Wait()      { g.wg.Wait() }
func (g *liveGroup) Len() int64 { return g.n.Load() }
