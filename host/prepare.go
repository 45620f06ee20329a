package host

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/proxyproto"
	"github.com/tunnelwasm/tunnel/internal/clienthello"
)

// prepare is what a connection does before its filters open, each step
// bounded by the route's HandshakeTimeout: read a PROXY header
// (AcceptProxy), choose the route by the ClientHello's server name
// (ServerNames), and run the TLS handshake with the client (TLS). It
// reports false when the connection is finished instead.
func (c *conn) prepare() bool {
	rs := c.rs
	if !rs.AcceptProxy && rs.group == nil && rs.TLS == nil {
		return true
	}
	deadline := time.Now().Add(rs.handshakeTimeout())
	if rs.AcceptProxy && !c.acceptProxy(deadline) {
		return false
	}
	if rs.group != nil && !c.chooseRoute(deadline) {
		return false
	}
	if c.rs.TLS == nil {
		return true
	}
	rc := &replayConn{TCPConn: c.client, pending: c.prefix}
	c.prefix = nil
	var nc net.Conn = rc
	if c.rs.WireTap != nil {
		tapped, err := c.callWireTap(nc)
		if err != nil {
			c.setReason(reasonFilterError)
			c.finish(fmt.Errorf("wire tap: %w", err))
			return false
		}
		nc = tapped
	}
	if err := c.acceptTLS(nc, deadline); err != nil {
		switch {
		case !rc.got && errors.Is(err, io.EOF):
			// Connected and left without a byte (a TCP health check):
			// an orderly end, not a failed handshake.
			c.setReason(reasonClientEOF)
			err = nil
		case !rc.got && errors.Is(err, syscall.ECONNRESET):
			c.setReason(reasonReset) // (a health check that resets)
		default:
			c.setReason(reasonTLS)
		}
		c.finish(err)
		return false
	}
	return true
}

// acceptProxy reads the PROXY protocol header a load balancer in front
// sends, and makes the client it names the connection's client. A peer
// outside TrustedProxies, a malformed header or none within the deadline
// refuses the connection.
func (c *conn) acceptProxy(deadline time.Time) bool {
	peer := c.client.RemoteAddr().(*net.TCPAddr).AddrPort()
	addr := peer.Addr().Unmap()
	trusted := false
	for _, n := range c.rs.TrustedProxies {
		if n.Contains(addr) {
			trusted = true
			break
		}
	}
	fail := func(err error) bool {
		if c.rs.group != nil {
			c.count(c.rs)
		}
		c.setReason(reasonProxyHeader)
		c.finish(err)
		return false
	}
	if !trusted {
		return fail(fmt.Errorf("PROXY header: peer %s is not in the trusted networks", addr))
	}
	c.client.SetReadDeadline(deadline)
	h, _, err := proxyproto.Parse(c.client)
	c.client.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fail(fmt.Errorf("PROXY header from %s: not complete within %s (handshake_timeout): %w", addr, c.rs.handshakeTimeout(), err))
	}
	if errors.Is(err, io.EOF) { // io.ErrUnexpectedEOF once a byte came
		// Connected and left without a byte (a load balancer's TCP
		// health check): an orderly end, not a bad header.
		if c.rs.group != nil {
			c.count(c.rs)
		}
		c.setReason(reasonClientEOF)
		c.finish(nil)
		return false
	}
	if err != nil {
		return fail(fmt.Errorf("PROXY header from %s: %w", addr, err))
	}
	if h.Command == proxyproto.Proxy && h.Source.IsValid() {
		c.p.mu.Lock() // Connections reads info under p.mu
		c.info.Client = net.TCPAddrFromAddrPort(h.Source)
		if h.Destination.IsValid() {
			// What the client connected to, as the proxy in front saw
			// it: passed on in our own PROXY header, as HAProxy does.
			c.info.Listen = net.TCPAddrFromAddrPort(h.Destination)
		}
		c.p.mu.Unlock()
	}
	return true
}

// maxClientHello bounds the ClientHello read to choose a route: well above
// the 16 KiB+ of post-quantum hellos, well below what a peer could make us
// hold.
const maxClientHello = 64 << 10

// chooseRoute reads the client's ClientHello and moves the connection to
// the route of its listen address whose ServerNames match the name it asks
// for: an exact name first, then a "*.suffix", then the "*" default. What
// was read goes first toward the chosen route's target, byte for byte. No
// match gets a TLS unrecognized_name alert and closes the connection.
func (c *conn) chooseRoute(deadline time.Time) bool {
	primary := c.rs
	c.client.SetReadDeadline(deadline)
	h, err := clienthello.Read(c.client, maxClientHello)
	c.client.SetReadDeadline(time.Time{})
	name := ""
	if h != nil {
		name = h.ServerName
		c.prefix = h.Raw
	}
	if h == nil && (errors.Is(err, io.EOF) || errors.Is(err, clienthello.ErrTruncated)) {
		// Connected and left without a byte (a TCP health check): an
		// orderly end, not a refusal.
		c.count(primary)
		c.setReason(reasonClientEOF)
		c.finish(nil)
		return false
	}
	var chosen *routeState
	switch {
	case err == nil || errors.Is(err, clienthello.ErrNotTLS):
		// Not TLS at all: only the default route may take it.
		chosen = matchRoute(primary.group, name, err == nil)
	}
	if chosen == nil || !chosen.acquire() {
		c.count(primary)
		// What was read of the client (the hello, or its start) counts
		// in bytes_from_client, though nothing goes on.
		c.read[ClientToServer].Add(int64(len(c.prefix)))
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			c.setReason(reasonReset) // (a health check that resets)
		case err != nil && !errors.Is(err, clienthello.ErrNotTLS):
			// A ClientHello cut off, malformed or too large (a scanner, a
			// slow client): a failed handshake, not a question of routing.
			c.setReason(reasonTLS)
		default:
			c.setReason(reasonNoRoute)
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("choosing a route by server name: no whole ClientHello within %s (handshake_timeout; %d bytes read): %w", primary.handshakeTimeout(), len(c.prefix), err)
		case errors.Is(err, clienthello.ErrMalformed):
			// As a terminating route's crypto/tls answers it: an alert the
			// client can report, not a bare close.
			err = fmt.Errorf("choosing a route by server name: %w", err)
			c.client.SetWriteDeadline(time.Now().Add(time.Second))
			c.client.Write(clienthello.Alert(clienthello.AlertDecodeError))
		case err != nil:
			err = fmt.Errorf("choosing a route by server name: %w", err)
		case chosen != nil:
			err = fmt.Errorf("no route for server name %q: the configuration changed", name)
		default:
			err = fmt.Errorf("no route for server name %q", name)
			c.client.SetWriteDeadline(time.Now().Add(time.Second))
			clienthello.WriteUnrecognizedName(c.client)
		}
		c.finish(err)
		return false
	}
	if chosen != primary {
		c.p.mu.Lock() // Stats and Connections read rs under p.mu
		c.rs = chosen
		c.info.Route = chosen.Name
		c.info.Target = chosen.Target
		c.p.mu.Unlock()
		c.p.release(primary)
	} else {
		chosen.refs.Add(-1) // acquired twice: once at accept
	}
	c.count(chosen)
	if err == nil { // a ClientHello, not a plaintext client on the default route
		c.p.mu.Lock()
		c.info.TLS = &TLSInfo{ServerName: name}
		c.p.mu.Unlock()
	}
	return true
}

// count counts the connection as accepted by rs: a connection of a shared
// address is counted once its route is known.
func (c *conn) count(rs *routeState) {
	rs.ctr.accepted.Add(1)
	rs.ctr.active.Add(1)
}

// acquire takes a reference to rs for a connection, unless its last one is
// gone (a reload replaced it a moment ago).
func (rs *routeState) acquire() bool {
	for {
		n := rs.refs.Load()
		if n <= 0 {
			return false
		}
		if rs.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// matchRoute picks the route for name among group: exact names first, then
// wildcards, then the "*" default (the only one a non-TLS client or a hello
// without a name can get).
func matchRoute(group []*routeState, name string, isTLS bool) *routeState {
	if !isTLS {
		name = "" // plaintext: the "*" route alone
	}
	if i := clienthello.Pick(len(group), func(i int) []string { return group[i].ServerNames }, name); i >= 0 {
		return group[i]
	}
	return nil
}

// checkServerNames checks a route's ServerNames against the routes before
// it: valid patterns, one default per address, no name twice.
func checkServerNames(label string, r Route, before []Route) []error {
	var errs []error
	for _, pat := range r.ServerNames {
		if err := clienthello.CheckPattern(pat); err != nil {
			errs = append(errs, fmt.Errorf("%s: ServerNames: %w", label, err))
		}
	}
	for _, o := range before {
		if len(o.ServerNames) == 0 || listenKey(o) != listenKey(r) {
			continue
		}
		for _, pat := range r.ServerNames {
			for _, op := range o.ServerNames {
				if strings.EqualFold(pat, op) {
					errs = append(errs, fmt.Errorf("%s: server name %q is also route %q's on %s", label, pat, o.Name, r.Listen))
				}
			}
		}
		// The address's listener and the reading of the ClientHello and
		// PROXY header are the address's, not a route's.
		for _, s := range []struct {
			name  string
			agree bool
		}{
			{"accept_proxy", r.AcceptProxy == o.AcceptProxy},
			{"trusted_cidrs", slices.Equal(r.TrustedProxies, o.TrustedProxies)},
			{"max_connections", r.MaxConns == o.MaxConns},
			{"reuse_port", r.ReusePort == o.ReusePort},
			{"handshake_timeout", r.handshakeTimeout() == o.handshakeTimeout()},
		} {
			if !s.agree {
				errs = append(errs, fmt.Errorf("%s: routes sharing %s must agree on %s (route %q differs)", label, r.Listen, s.name, o.Name))
			}
		}
	}
	return errs
}
