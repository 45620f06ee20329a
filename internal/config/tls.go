package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/clienthello"
	"github.com/tunnelwasm/tunnel/internal/tlsconf"
)

type tlsBody struct {
	DeclRange         hcl.Range      `hcl:",def_range"`
	Cert              hcl.Expression `hcl:"cert,optional"`
	Key               hcl.Expression `hcl:"key,optional"`
	ClientCA          hcl.Expression `hcl:"client_ca,optional"`
	RequireClientCert hcl.Expression `hcl:"require_client_cert,optional"`
	MinVersion        hcl.Expression `hcl:"min_version,optional"`
	ALPN              hcl.Expression `hcl:"alpn,optional"`
	KeyLog            hcl.Expression `hcl:"key_log,optional"`
	Allow             *allowBody     `hcl:"allow,block"`
}

type allowBody struct {
	DeclRange  hcl.Range      `hcl:",def_range"`
	All        hcl.Expression `hcl:"all,optional"`
	CN         hcl.Expression `hcl:"cn,optional"`
	DNS        hcl.Expression `hcl:"dns,optional"`
	URI        hcl.Expression `hcl:"uri,optional"`
	SPKISHA256 hcl.Expression `hcl:"spki_sha256,optional"`
}

type upstreamTLSBody struct {
	DeclRange          hcl.Range      `hcl:",def_range"`
	CA                 hcl.Expression `hcl:"ca,optional"`
	ServerName         hcl.Expression `hcl:"server_name,optional"`
	Cert               hcl.Expression `hcl:"cert,optional"`
	Key                hcl.Expression `hcl:"key,optional"`
	InsecureSkipVerify hcl.Expression `hcl:"insecure_skip_verify,optional"`
	MinVersion         hcl.Expression `hcl:"min_version,optional"`
	ALPN               hcl.Expression `hcl:"alpn,optional"`
	KeyLog             hcl.Expression `hcl:"key_log,optional"`
}

// The TLS settings of a route:
//
//	route "web" {
//	  listen = "0.0.0.0:443"
//	  target = "127.0.0.1:8080"
//	  tls {                                  # terminate: plugins see plaintext
//	    cert        = "certs/web.pem"        # chain, leaf first (relative to this file)
//	    key         = "certs/web-key.pem"
//	    min_version = "1.2"                  # or "1.3"
//	    alpn        = ["h2", "http/1.1"]
//	    client_ca   = "certs/clients-ca.pem" # mutual TLS: deny by default ...
//	    require_client_cert = true           # (default with client_ca)
//	    allow {                              # ... any one rule lets a verified client in
//	      cn          = ["alice"]
//	      dns         = ["*.team.example"]
//	      uri         = ["spiffe://example.org/web"]
//	      spki_sha256 = ["9f86d0...0a08"]
//	      # all = true: any certificate client_ca signed
//	    }
//	    key_log = "keys.log"                 # NSS key log for Wireshark: secrets!
//	  }
//	  upstream_tls {                         # originate TLS toward the target
//	    ca          = "certs/backend-ca.pem" # default: the system's roots
//	    server_name = "backend.internal"     # default: the target's host
//	    cert        = "certs/tunnel.pem"     # client certificate, if the target asks
//	    key         = "certs/tunnel-key.pem"
//	    # insecure_skip_verify = true        # tests only (warned about)
//	  }
//	  handshake_timeout = "10s"              # TLS handshake, ClientHello, PROXY header
//	  accept_proxy  = true                   # a load balancer in front sends PROXY v1/v2
//	  trusted_cidrs = ["10.0.0.0/8"]         # required with accept_proxy
//	}
//
// SNI routing without terminating: routes with the same listen address
// each give server_names (exact names, or "*.example.com" for one label in
// front), and at most one gives "*", the default. Such a route may also
// terminate TLS (a tls block): the ClientHello picks the route, whose
// certificate then answers it. Routes sharing an address must agree on
// accept_proxy.
//
// TLS is a route's tls block: the tunnel terminates TLS from clients.
type TLS struct {
	// Settings hold the resolved file paths and the rules; KeyLog is
	// filled in by the Builder.
	Settings tlsconf.ServerSettings
	// KeyLog is the key_log path, resolved; empty for none.
	KeyLog string

	DeclRange hcl.Range
	// CertRange is where cert problems are reported (the cert attribute);
	// ClientCARange the client_ca's (the block when absent).
	CertRange, KeyRange, ClientCARange, KeyLogRange hcl.Range
}

// UpstreamTLS is a route's upstream_tls block: the tunnel originates TLS
// toward the target.
type UpstreamTLS struct {
	Settings tlsconf.ClientSettings
	KeyLog   string

	DeclRange                                 hcl.Range
	CARange, CertRange, KeyRange, KeyLogRange hcl.Range
}

// Limits of the TLS settings.
const (
	MinHandshakeTimeout = time.Millisecond
	MaxHandshakeTimeout = 5 * time.Minute
	maxALPN             = 255 // bytes in one protocol name
)

// routeTLS reads a route's TLS, SNI and PROXY-in settings.
func (d *decoder) routeTLS(r *Route, rb *routeBody) {
	if tb := rb.TLS; tb != nil {
		r.TLS = d.tlsBlock(r, tb)
	}
	if ub := rb.UpstreamTLS; ub != nil {
		r.UpstreamTLS = d.upstreamTLS(r, ub)
	}
	if _, absent := d.absent(rb.ServerNames); !absent {
		r.ServerNamesRange = rb.ServerNames.Range()
		names, ranges, ok := d.stringList(rb.ServerNames, "server_names")
		// The valid names are kept even next to invalid ones, so that
		// clashes with other routes are reported too.
		var valid []string
		var validRanges []hcl.Range
		seen := map[string]hcl.Range{}
		for i, n := range names {
			if err := clienthello.CheckPattern(n); err != nil {
				d.errorf(ranges[i], "Invalid server name", "%v; write a host name, \"*.example.com\" (any one label in front) or \"*\" (the default route of this address).", err)
				continue
			}
			key := strings.ToLower(n)
			if first, dup := seen[key]; dup {
				d.errorf(ranges[i], "Duplicate server name", "%q is already listed at %s.", n, shortRange(first))
				continue
			}
			seen[key] = ranges[i]
			valid, validRanges = append(valid, n), append(validRanges, ranges[i])
		}
		if ok && len(names) == 0 {
			d.errorf(rb.ServerNames.Range(), "Empty server_names", "List the names this route serves, or \"*\" for the default route of its listen address; or remove server_names.")
		}
		r.ServerNames, r.serverNameRanges = valid, validRanges
	}
	if v, ok := d.duration(rb.HandshakeTimeout, "handshake_timeout", MinHandshakeTimeout, MaxHandshakeTimeout); ok {
		r.HandshakeTimeout = v
		if r.TLS == nil && len(r.ServerNames) == 0 && !boolAttr(d, rb.AcceptProxy) {
			d.warnf(rb.HandshakeTimeout.Range(), "handshake_timeout has no effect", "Route %q neither terminates TLS (tls block), reads a ClientHello (server_names) nor a PROXY header (accept_proxy), so nothing is timed by handshake_timeout.", r.Name)
		}
	}
	if v, ok := d.boolean(rb.AcceptProxy, "accept_proxy"); ok && v {
		r.AcceptProxy = true
		r.AcceptProxyRange = rb.AcceptProxy.Range()
		if _, absent := d.absent(rb.TrustedCIDRs); absent {
			d.errorf(rb.AcceptProxy.Range(), "Missing trusted_cidrs", "accept_proxy = true believes the client address a PROXY header names, so route %q must say who may send one; add trusted_cidrs = [\"10.0.0.0/8\"] (the load balancers' networks).", r.Name)
		}
	}
	if _, absent := d.absent(rb.TrustedCIDRs); !absent {
		cidrs, ranges, _ := d.stringList(rb.TrustedCIDRs, "trusted_cidrs")
		for i, c := range cidrs {
			p, err := parsePrefix(c)
			if err != nil {
				d.errorf(ranges[i], "Invalid trusted_cidrs", "%q is not a network; write an address with a prefix length, such as \"10.0.0.0/8\" or \"fd00::/8\", or one address, such as \"192.0.2.7\".", c)
				continue
			}
			r.TrustedProxies = append(r.TrustedProxies, p)
		}
		if !r.AcceptProxy {
			d.warnf(rb.TrustedCIDRs.Range(), "trusted_cidrs has no effect", "Route %q does not accept PROXY headers; add accept_proxy = true, or remove trusted_cidrs.", r.Name)
		}
	}
}

// parsePrefix reads a CIDR or a single address (as a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func boolAttr(d *decoder, expr hcl.Expression) bool {
	v, diags := expr.Value(d.ctx)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.Bool {
		return false
	}
	return v.True()
}

// stringList reads a list of strings with the range of each element (the
// whole expression's when the list is not written out literally).
func (d *decoder) stringList(expr hcl.Expression, name string) ([]string, []hcl.Range, bool) {
	v, ok := d.convert(expr, name, cty.List(cty.String))
	if !ok {
		return nil, nil, false
	}
	elems, _ := hcl.ExprList(expr)
	var out []string
	var ranges []hcl.Range
	for i, e := range v.AsValueSlice() {
		if e.IsNull() {
			d.errorf(expr.Range(), "Invalid "+name, "%s has a null element.", name)
			return nil, nil, false
		}
		out = append(out, e.AsString())
		rng := expr.Range()
		if len(elems) == v.LengthInt() {
			rng = elems[i].Range()
		}
		ranges = append(ranges, rng)
	}
	return out, ranges, true
}

// path reads a file path attribute, resolved against the file's directory.
func (d *decoder) path(expr hcl.Expression, name string) string {
	s, ok := d.str(expr, name)
	if !ok {
		return ""
	}
	if s == "" {
		d.errorf(expr.Range(), "Invalid "+name, "%s is empty; name a file, or remove the attribute.", name)
		return ""
	}
	return d.resolve(s)
}

// attrRange is the attribute's range, or the block's when it is absent.
func (d *decoder) attrRange(expr hcl.Expression, block hcl.Range) hcl.Range {
	if _, absent := d.absent(expr); absent {
		return block
	}
	return expr.Range()
}

func (d *decoder) alpn(expr hcl.Expression) []string {
	if _, absent := d.absent(expr); absent {
		return nil
	}
	protos, ranges, ok := d.stringList(expr, "alpn")
	if !ok {
		return nil
	}
	for i, p := range protos {
		if p == "" || len(p) > maxALPN {
			d.errorf(ranges[i], "Invalid alpn", "An ALPN protocol name has 1 to %d bytes, such as \"h2\" or \"http/1.1\".", maxALPN)
			return nil
		}
	}
	return protos
}

func (d *decoder) minVersion(expr hcl.Expression) string {
	if _, absent := d.absent(expr); absent {
		return ""
	}
	v, _ := d.oneOf(expr, "min_version", "1.2", "1.3")
	return v
}

func (d *decoder) keyLog(expr hcl.Expression, route string) string {
	if _, absent := d.absent(expr); absent {
		return ""
	}
	p := d.path(expr, "key_log")
	if p != "" {
		d.warnf(expr.Range(), "key_log records secrets", "Route %q appends the secrets of every TLS session to %s (NSS key log format): anyone who can read it can decrypt the traffic, past and future captures alike. Use it only to debug, and remove it afterwards.", route, p)
	}
	return p
}

func (d *decoder) tlsBlock(r *Route, tb *tlsBody) *TLS {
	t := &TLS{DeclRange: tb.DeclRange}
	block := fmt.Sprintf("the tls block of route %q", r.Name)
	ok := true
	t.CertRange, t.KeyRange = d.attrRange(tb.Cert, tb.DeclRange), d.attrRange(tb.Key, tb.DeclRange)
	t.ClientCARange = d.attrRange(tb.ClientCA, tb.DeclRange)
	t.KeyLogRange = d.attrRange(tb.KeyLog, tb.DeclRange)
	s := &t.Settings
	for _, a := range []struct {
		expr          hcl.Expression
		name, example string
		dst           *string
	}{{tb.Cert, "cert", `"cert.pem"`, &s.Cert}, {tb.Key, "key", `"key.pem"`, &s.Key}} {
		if _, absent := d.absent(a.expr); absent {
			d.errorf(tb.DeclRange, "Missing required argument", "The argument %q is required in %s; add for example %s = %s.", a.name, block, a.name, a.example)
			ok = false
		} else if *a.dst = d.path(a.expr, a.name); *a.dst == "" {
			ok = false
		}
	}
	s.MinVersion = d.minVersion(tb.MinVersion)
	s.ALPN = d.alpn(tb.ALPN)
	_, noCA := d.absent(tb.ClientCA)
	if !noCA {
		if s.ClientCA = d.path(tb.ClientCA, "client_ca"); s.ClientCA == "" {
			ok = false
		}
	}
	if _, absent := d.absent(tb.RequireClientCert); !absent {
		if v, valid := d.boolean(tb.RequireClientCert, "require_client_cert"); valid {
			s.OptionalClientCert = !v
			if noCA {
				d.errorf(tb.RequireClientCert.Range(), "require_client_cert needs client_ca", "Client certificates are only asked for and verified with client_ca = \"ca.pem\" (the CAs that sign them); add it, or remove require_client_cert.")
				ok = false
			}
		}
	}
	if ab := tb.Allow; ab != nil {
		if noCA {
			d.errorf(ab.DeclRange, "allow needs client_ca", "Allow rules filter client certificates, which are only asked for with client_ca = \"ca.pem\"; add it, or remove the allow block.")
			ok = false
		}
		a, valid := d.allow(ab)
		if !valid {
			ok = false
		}
		s.Allow = a
	}
	if !noCA && s.ClientCA != "" && s.Allow.Empty() && ok {
		d.errorf(tb.ClientCA.Range(), "Mutual TLS without allow rules", "With client_ca every client is refused unless an allow rule lets it in (deny by default, as ghostunnel does). Add allow { cn = [\"client name\"] } (or dns, uri, spki_sha256), or allow { all = true } to accept any certificate client_ca signed.")
		ok = false
	}
	t.KeyLog = d.keyLog(tb.KeyLog, r.Name)
	if !ok {
		return nil
	}
	return t
}

func (d *decoder) allow(ab *allowBody) (tlsconf.Allow, bool) {
	var a tlsconf.Allow
	ok := true
	if v, valid := d.boolean(ab.All, "all"); valid {
		a.All = v
	}
	list := func(expr hcl.Expression, name string) ([]string, []hcl.Range) {
		if _, absent := d.absent(expr); absent {
			return nil, nil
		}
		l, r, valid := d.stringList(expr, name)
		if !valid {
			ok = false
		}
		return l, r
	}
	a.CN, _ = list(ab.CN, "cn")
	var ranges []hcl.Range
	a.DNS, ranges = list(ab.DNS, "dns")
	for i, n := range a.DNS {
		if err := clienthello.CheckPattern(n); err != nil || n == "*" {
			d.errorf(ranges[i], "Invalid allow rule", "dns = %q is not a DNS name or \"*.name\"; to accept every client certificate client_ca signed, write all = true.", n)
			ok = false
		}
	}
	a.URI, ranges = list(ab.URI, "uri")
	for i, u := range a.URI {
		if !strings.Contains(u, ":") {
			d.errorf(ranges[i], "Invalid allow rule", "uri = %q is not a URI; write it in full, such as \"spiffe://example.org/service\".", u)
			ok = false
		}
	}
	a.SPKISHA256, ranges = list(ab.SPKISHA256, "spki_sha256")
	for i, p := range a.SPKISHA256 {
		if _, err := tlsconf.ParseSPKI(p); err != nil {
			d.errorf(ranges[i], "Invalid allow rule", "%v.", err)
			ok = false
		}
	}
	if ok && a.Empty() {
		d.errorf(ab.DeclRange, "Empty allow block", "An empty allow block lets no client in; list cn, dns, uri or spki_sha256 values, or write all = true to accept any certificate client_ca signed.")
		ok = false
	}
	if a.All && (len(a.CN)+len(a.DNS)+len(a.URI)+len(a.SPKISHA256)) > 0 {
		d.warnf(ab.All.Range(), "Allow rules have no effect", "all = true accepts every certificate client_ca signed, so the other rules of this block restrict nothing; remove them, or remove all.")
	}
	return a, ok
}

func (d *decoder) upstreamTLS(r *Route, ub *upstreamTLSBody) *UpstreamTLS {
	u := &UpstreamTLS{DeclRange: ub.DeclRange}
	u.CARange, u.CertRange, u.KeyRange = d.attrRange(ub.CA, ub.DeclRange), d.attrRange(ub.Cert, ub.DeclRange), d.attrRange(ub.Key, ub.DeclRange)
	u.KeyLogRange = d.attrRange(ub.KeyLog, ub.DeclRange)
	s := &u.Settings
	ok := true
	if _, absent := d.absent(ub.CA); !absent {
		if s.CA = d.path(ub.CA, "ca"); s.CA == "" {
			ok = false
		}
	}
	if _, absent := d.absent(ub.ServerName); !absent {
		if v, valid := d.str(ub.ServerName, "server_name"); valid {
			if err := clienthello.CheckPattern(v); err != nil || strings.Contains(v, "*") {
				d.errorf(ub.ServerName.Range(), "Invalid server_name", "server_name = %q is not a host name; write the name the target's certificate has, such as \"backend.internal\".", v)
				ok = false
			}
			s.ServerName = v
		} else {
			ok = false
		}
	}
	_, noCert := d.absent(ub.Cert)
	_, noKey := d.absent(ub.Key)
	switch {
	case !noCert && noKey:
		d.errorf(ub.Cert.Range(), "cert without key", "A client certificate needs its private key; add key = \"key.pem\" to this upstream_tls block.")
		ok = false
	case noCert && !noKey:
		d.errorf(ub.Key.Range(), "key without cert", "A private key needs its client certificate; add cert = \"cert.pem\" to this upstream_tls block.")
		ok = false
	case !noCert:
		s.Cert, s.Key = d.path(ub.Cert, "cert"), d.path(ub.Key, "key")
		if s.Cert == "" || s.Key == "" {
			ok = false
		}
	}
	if v, valid := d.boolean(ub.InsecureSkipVerify, "insecure_skip_verify"); valid && v {
		s.InsecureSkipVerify = true
		d.warnf(ub.InsecureSkipVerify.Range(), "Target certificate not verified", "insecure_skip_verify = true makes route %q accept any certificate from its target, so anyone on the path to %s can read and change the traffic. Use it only in tests; give ca = \"ca.pem\" instead.", r.Name, targetOrPlugin(r))
	}
	s.MinVersion = d.minVersion(ub.MinVersion)
	s.ALPN = d.alpn(ub.ALPN)
	u.KeyLog = d.keyLog(ub.KeyLog, r.Name)
	if !ok {
		return nil
	}
	return u
}

func targetOrPlugin(r *Route) string {
	if r.Target != "" {
		return r.Target
	}
	return "the target"
}

// checkServerNames checks the routes sharing a listen address: each must
// give server_names, at most one the "*" default, no name twice, and all
// the same accept_proxy. It returns the routes allowed to share (so
// checkListens does not report them again).
func (d *decoder) checkServerNames() map[*Route]bool {
	shared := map[*Route]bool{}
	byListen := map[string][]*Route{}
	var order []string
	for _, r := range d.file.Routes {
		if r.Listen == "" {
			continue
		}
		if _, port, _ := splitPort(r.Listen); port == "0" {
			continue // each gets its own free port
		}
		if byListen[r.Listen] == nil {
			order = append(order, r.Listen)
		}
		byListen[r.Listen] = append(byListen[r.Listen], r)
	}
	for _, l := range order {
		group := byListen[l]
		var named *Route
		for _, r := range group {
			if r.hasServerNames() {
				named = r
				break
			}
		}
		if len(group) < 2 || named == nil {
			continue // a single route, or plain duplicates for checkListens
		}
		first := group[0]
		for _, r := range group {
			shared[r] = true
			if !r.hasServerNames() {
				d.errorf(r.ListenRange, "Shared listen address without server_names", "Route %q listens on %s like route %q (%s), which routes by server name; routes share an address only when each gives server_names. Add server_names = [\"*\"] to make route %q the default, or give it its own port.", r.Name, l, named.Name, shortRange(named.ListenRange), r.Name)
			}
		}
		seen := map[string]*Route{}
		seenAt := map[string]hcl.Range{}
		for _, r := range group {
			for i, n := range r.ServerNames {
				key := strings.ToLower(n)
				if o, dup := seen[key]; dup && o != r {
					what := fmt.Sprintf("Server name %q", n)
					if n == "*" {
						what = "The default (\"*\")"
					}
					d.errorf(r.serverNameRanges[i], "Duplicate server name", "%s is already route %q's on %s (%s); a name picks one route.", what, o.Name, l, shortRange(seenAt[key]))
					continue
				}
				seen[key], seenAt[key] = r, r.serverNameRanges[i]
			}
		}
		for _, r := range group[1:] {
			if r.AcceptProxy != first.AcceptProxy {
				rng := r.ListenRange
				if r.AcceptProxy {
					rng = r.AcceptProxyRange
				}
				d.errorf(rng, "Routes sharing an address disagree on accept_proxy", "Route %q and route %q both listen on %s, where the PROXY header (if any) is read before the server name picks a route; set accept_proxy the same on both.", r.Name, first.Name, l)
			}
			// The rest of what belongs to the address, not to a route: the
			// Proxy refuses to start routes that differ on it (host.Route).
			for _, s := range []struct {
				name  string
				agree bool
			}{
				{"trusted_cidrs", r.AcceptProxy != first.AcceptProxy || slices.Equal(r.TrustedProxies, first.TrustedProxies)}, // a disagreement on accept_proxy is reported already
				{"max_connections", r.MaxConns == first.MaxConns},
				{"reuse_port", r.ReusePort == first.ReusePort},
				{"handshake_timeout", effectiveHandshakeTimeout(r) == effectiveHandshakeTimeout(first)},
			} {
				if !s.agree {
					d.errorf(r.ListenRange, "Routes sharing an address disagree on "+s.name, "Route %q and route %q both listen on %s, whose listener, connection cap, PROXY header and ClientHello belong to the address, not to one route; set %s the same on both.", r.Name, first.Name, l, s.name)
				}
			}
		}
	}
	return shared
}

// effectiveHandshakeTimeout is r's handshake_timeout, or the default the
// Proxy applies when it is unset.
func effectiveHandshakeTimeout(r *Route) time.Duration {
	if r.HandshakeTimeout > 0 {
		return r.HandshakeTimeout
	}
	return host.DefaultHandshakeTimeout
}

// hasServerNames reports whether the route has a server_names attribute
// (even one with errors, so they are not reported twice).
func (r *Route) hasServerNames() bool { return r.ServerNamesRange != (hcl.Range{}) }

func splitPort(hostport string) (string, string, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return "", "", fmt.Errorf("no port in %q", hostport)
	}
	return hostport[:i], hostport[i+1:], nil
}

// tlsFiles lists the absolute paths of the certificate, key and CA files
// the routes read, so the Runner reloads when one changes.
func (f *File) tlsFiles() []string {
	var files []string
	add := func(paths ...string) {
		for _, p := range paths {
			if p == "" {
				continue
			}
			if a, err := filepath.Abs(p); err == nil {
				files = append(files, a)
			}
		}
	}
	for _, r := range f.Routes {
		if t := r.TLS; t != nil {
			add(t.Settings.Cert, t.Settings.Key, t.Settings.ClientCA)
		}
		if u := r.UpstreamTLS; u != nil {
			add(u.Settings.CA, u.Settings.Cert, u.Settings.Key)
		}
	}
	return files
}

// tlsSettings describes, one line per route that has any, the TLS, SNI and
// PROXY-in settings of the routes, with each certificate's subject and
// expiry (read from disk; a file that does not load says why): what
// `tunnel validate -v` prints after the plugins.
func (f *File) tlsSettings() []string {
	var out []string
	for _, r := range f.Routes {
		var parts []string
		if len(r.ServerNames) > 0 {
			parts = append(parts, "chosen by server name "+strings.Join(r.ServerNames, ", "))
		}
		if t := r.TLS; t != nil {
			s := fmt.Sprintf("terminates TLS %s+ with %s", orString(t.Settings.MinVersion, "1.2"), t.Settings.Cert)
			if l, err := tlsconf.LoadServer(t.Settings); err != nil {
				s += " (" + err.Error() + ")"
			} else {
				s += fmt.Sprintf(" (%s, expires %s)", tlsconf.Subject(l.Leaf), l.Leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			if t.Settings.ClientCA != "" {
				s += ", clients verified by " + t.Settings.ClientCA
			}
			parts = append(parts, s)
		}
		if u := r.UpstreamTLS; u != nil {
			s := "originates TLS to the target"
			switch {
			case u.Settings.InsecureSkipVerify:
				s += " WITHOUT verifying it"
			case u.Settings.CA != "":
				s += ", verified by " + u.Settings.CA
			default:
				s += ", verified by the system's roots"
			}
			if u.Settings.ServerName != "" {
				s += " as " + u.Settings.ServerName
			}
			parts = append(parts, s)
		}
		if r.AcceptProxy {
			nets := make([]string, len(r.TrustedProxies))
			for i, p := range r.TrustedProxies {
				nets[i] = p.String()
			}
			parts = append(parts, "PROXY headers from "+strings.Join(nets, ", "))
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("route %q: %s", r.Name, strings.Join(parts, "; ")))
		}
	}
	return out
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
