package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/addr"
)

// DefaultAdminListen is the admin endpoint's address when the admin block
// names none: this machine only.
const DefaultAdminListen = "127.0.0.1:9901"

// MaxDrainDelay bounds the admin block's drain_delay.
const MaxDrainDelay = 5 * time.Minute

// Admin is the admin block: the admin endpoint (package internal/admin).
//
//	admin {
//	  listen      = "127.0.0.1:9901" # the default
//	  pprof       = false            # true: serve /debug/pprof/ too
//	  drain_delay = "0s"             # on SIGINT/SIGTERM: /readyz 503 this long before the listeners stop
//	}
//
// The endpoint is started with the first configuration; a reload that
// changes the block is logged and takes effect at the next start.
type Admin struct {
	// Listen is host:port. A host is required: a non-loopback one
	// (0.0.0.0 included) is allowed, with a warning, when written out.
	Listen string
	// Exposed reports a Listen reachable from other machines.
	Exposed bool
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// DrainDelay is how long a stop keeps the listeners open after
	// /readyz has turned 503, for load balancers to notice; 0 to 5m.
	DrainDelay time.Duration

	DeclRange hcl.Range
	// ListenRange is the listen attribute's value, or the block's when
	// the attribute is absent.
	ListenRange hcl.Range
}

// adminBody is the admin block's schema.
type adminBody struct {
	DeclRange  hcl.Range      `hcl:",def_range"`
	Listen     hcl.Expression `hcl:"listen,optional"`
	Pprof      hcl.Expression `hcl:"pprof,optional"`
	DrainDelay hcl.Expression `hcl:"drain_delay,optional"`
}

// admin reads the admin block, after the routes (its address must not be
// one of theirs).
func (d *decoder) admin(ab *adminBody) {
	if ab == nil {
		return
	}
	a := &Admin{Listen: DefaultAdminListen, DeclRange: ab.DeclRange, ListenRange: ab.DeclRange}
	d.file.Admin = a
	valid := true
	if _, absent := d.absent(ab.Listen); !absent {
		a.ListenRange = ab.Listen.Range()
		valid = false
		if v, ok := d.str(ab.Listen, "listen"); ok {
			if exposed, err := addr.Exposed(v); err != nil {
				d.errorf(a.ListenRange, "Invalid admin address", "%v.", err)
			} else {
				a.Listen, a.Exposed, valid = v, exposed, true
			}
		}
	}
	if v, ok := d.boolean(ab.Pprof, "pprof"); ok {
		a.Pprof = v
	}
	if v, ok := d.duration(ab.DrainDelay, "drain_delay", 0, MaxDrainDelay); ok {
		a.DrainDelay = v
	}
	if !valid {
		return
	}
	if a.Exposed {
		what := "the routes and their targets (/config) and the metrics"
		if a.Pprof {
			what += ", and can profile the process and read its command line (pprof)"
		}
		d.warnf(a.ListenRange, "Admin endpoint reachable from other machines",
			"listen = %q is not a loopback address: anyone who can connect to it reads %s. Listen on 127.0.0.1 unless a firewall keeps others out.", a.Listen, what)
	}
	h, port, _ := net.SplitHostPort(a.Listen)
	if port == "0" {
		return
	}
	for _, r := range d.file.Routes {
		rh, rport, _ := net.SplitHostPort(r.Listen)
		if rport == port && (rh == h || wildcard(h) || wildcard(rh)) {
			d.errorf(a.ListenRange, "Duplicate listen address", "The admin endpoint listens on %s, which route %q (%s) already uses; give it its own port.", a.Listen, r.Name, shortRange(r.ListenRange))
			return
		}
	}
}

// Summary describes the configuration a [Runner] is serving, for the admin
// endpoint's /config.
type Summary struct {
	// File is the configuration file's path.
	File string `json:"file"`
	// SHA256 is the hex SHA-256 of the file's content as loaded.
	SHA256 string `json:"sha256"`
	// Loaded is when this configuration was applied.
	Loaded time.Time `json:"loaded"`
	// Plugins are the plugin blocks, in file order.
	Plugins []PluginSummary `json:"plugins"`
	// Routes are the routes served, in file order.
	Routes []RouteSummary `json:"routes"`
}

// PluginSummary is one plugin block of a [Summary].
type PluginSummary struct {
	Name string `json:"name"`
	// Path is the .wasm file; Builtin the built-in plugin run instead.
	Path    string `json:"path,omitempty"`
	Builtin string `json:"builtin,omitempty"`
	// URL is where a plugin by URL was fetched from (Path is the copy),
	// SHA256 the hash its block pins.
	URL    string `json:"url,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// RouteSummary is one route as applied to the Proxy.
type RouteSummary struct {
	Name   string `json:"name"`
	Listen string `json:"listen"`
	// Address is the address bound (Listen with its port chosen when 0).
	Address string `json:"address,omitempty"`
	Target  string `json:"target"`
	// Chain names the links of the route's chain in order, the client's
	// side first: the plugins and the tunnel's own ("dump",
	// "proxy-protocol", ...).
	Chain []string `json:"chain"`
	// DialTimeout and IdleTimeout are the route's timeouts (Go durations),
	// MaxConns its connection cap; left out when unset (the defaults).
	DialTimeout string `json:"dial_timeout,omitempty"`
	IdleTimeout string `json:"idle_timeout,omitempty"`
	MaxConns    int    `json:"max_connections,omitempty"`
	// ServerNames are the SNI names that choose the route on a shared
	// listen address.
	ServerNames []string `json:"server_names,omitempty"`
	// TLS describes the TLS the route terminates; UpstreamTLS the TLS it
	// speaks to its target.
	TLS         *TLSSummary         `json:"tls,omitempty"`
	UpstreamTLS *UpstreamTLSSummary `json:"upstream_tls,omitempty"`
	// AcceptProxy: the route reads a PROXY header from the peers in
	// TrustedProxies.
	AcceptProxy    bool     `json:"accept_proxy,omitempty"`
	TrustedProxies []string `json:"trusted_cidrs,omitempty"`
	// Capture: the route's connections are written to a capture file.
	Capture bool `json:"capture,omitempty"`
}

// TLSSummary is the TLS a route terminates.
type TLSSummary struct {
	// Certificates are the ones it presents.
	Certificates []CertSummary `json:"certificates"`
	// ClientAuth is the client certificate policy (crypto/tls's name,
	// e.g. "RequireAndVerifyClientCert"), MinVersion the oldest version
	// accepted and ALPN the protocols offered.
	ClientAuth string   `json:"client_auth"`
	MinVersion string   `json:"min_version,omitempty"`
	ALPN       []string `json:"alpn,omitempty"`
}

// UpstreamTLSSummary is the TLS a route speaks to its target.
type UpstreamTLSSummary struct {
	// ServerName is the name verified in the target's certificate (and
	// sent as SNI); Verify is false when verification is off.
	ServerName string `json:"server_name,omitempty"`
	Verify     bool   `json:"verify"`
	// Certificate is the client certificate it presents, if any.
	Certificate *CertSummary `json:"certificate,omitempty"`
}

// CertSummary names a certificate and says until when it is valid, so
// that an operator sees what a reload put in place and what expires.
type CertSummary struct {
	Subject  string    `json:"subject"`
	DNSNames []string  `json:"dns_names,omitempty"`
	NotAfter time.Time `json:"not_after"`
}

// Summarize describes routes as applied to a Proxy; bound returns a route's
// bound address, or nil (host.Proxy.Addr).
func Summarize(routes []host.Route, bound func(name string) net.Addr) []RouteSummary {
	out := make([]RouteSummary, 0, len(routes))
	for _, r := range routes {
		s := RouteSummary{Name: r.Name, Listen: r.Listen, Target: r.Target, Chain: []string{}}
		if a := bound(r.Name); a != nil {
			s.Address = a.String()
		}
		for _, l := range r.Chain {
			s.Chain = append(s.Chain, l.Name)
		}
		if r.DialTimeout > 0 {
			s.DialTimeout = r.DialTimeout.String()
		}
		if r.IdleTimeout > 0 {
			s.IdleTimeout = r.IdleTimeout.String()
		}
		s.MaxConns = r.MaxConns
		s.ServerNames = r.ServerNames
		if c := r.TLS; c != nil {
			t := &TLSSummary{Certificates: certSummaries(c.Certificates), ClientAuth: c.ClientAuth.String(), ALPN: c.NextProtos}
			if c.MinVersion != 0 {
				t.MinVersion = tls.VersionName(c.MinVersion)
			}
			s.TLS = t
		}
		if c := r.UpstreamTLS; c != nil {
			u := &UpstreamTLSSummary{ServerName: c.ServerName, Verify: !c.InsecureSkipVerify}
			if cs := certSummaries(c.Certificates); len(cs) > 0 {
				u.Certificate = &cs[0]
			}
			s.UpstreamTLS = u
		}
		s.AcceptProxy = r.AcceptProxy
		for _, p := range r.TrustedProxies {
			s.TrustedProxies = append(s.TrustedProxies, p.String())
		}
		s.Capture = r.WireTap != nil
		out = append(out, s)
	}
	return out
}

// certSummaries describes certs by their leaves (parsed when a leaf is not
// kept).
func certSummaries(certs []tls.Certificate) []CertSummary {
	out := []CertSummary{}
	for _, c := range certs {
		leaf := c.Leaf
		if leaf == nil && len(c.Certificate) > 0 {
			leaf, _ = x509.ParseCertificate(c.Certificate[0])
		}
		if leaf == nil {
			continue
		}
		out = append(out, CertSummary{Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, NotAfter: leaf.NotAfter.UTC()})
	}
	return out
}

// The readiness of a Runner (Runner.Ready).
const (
	stateStarting = iota
	stateReady
	stateDraining
)

// applied records what load has just applied: the summary for Config, and
// readiness on the first load. A reload that changes the admin block is
// logged: the endpoint keeps the settings it was started with. r.mu is held.
func (r *Runner) applied(f *File, routes []host.Route) {
	var src []byte
	if hf := f.Files[r.Path]; hf != nil {
		src = hf.Bytes
	}
	sum := sha256.Sum256(src)
	s := &Summary{File: r.Path, SHA256: hex.EncodeToString(sum[:]), Loaded: time.Now().UTC(), Plugins: []PluginSummary{}, Routes: Summarize(routes, r.proxy.Addr)}
	for _, p := range f.Plugins {
		s.Plugins = append(s.Plugins, PluginSummary{Name: p.Name, Path: p.Path, Builtin: p.Builtin, URL: p.URL, SHA256: p.SHA256})
	}
	r.summary.Store(s)
	if r.state.CompareAndSwap(stateStarting, stateReady) {
		r.admin = f.Admin
		return
	}
	if !sameAdmin(r.admin, f.Admin) {
		r.logger().Warn("the admin block changed; the admin endpoint keeps its settings until the tunnel restarts", "file", r.Path)
	}
}

// sameAdmin reports whether two admin blocks have the same settings.
func sameAdmin(a, b *Admin) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Listen == b.Listen && a.Pprof == b.Pprof && a.DrainDelay == b.DrainDelay
}

// Admin returns the admin block the Runner started with, or nil: the
// settings of the admin endpoint to serve it with.
func (r *Runner) Admin() *Admin {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.admin
}

// Stats returns every route's counters (host.Proxy.Stats).
func (r *Runner) Stats() []host.RouteStats { return r.proxy.Stats() }

// Connections returns the open connections of every route (host.Proxy.Connections).
func (r *Runner) Connections() []host.ConnStats { return r.proxy.Connections() }

// Config returns the running configuration's *Summary (nil before Start).
func (r *Runner) Config() any { return r.summary.Load() }

// Ready returns nil while the Runner serves a configuration and is not
// stopping: before Start has applied the file, and from Drain, Shutdown or
// Close on, it returns why not.
func (r *Runner) Ready() error {
	switch r.state.Load() {
	case stateReady:
		return nil
	case stateDraining:
		return errors.New("draining: POST /drain or a shutdown asked new connections to go elsewhere")
	}
	return errors.New("no configuration is running yet")
}

// Drain makes Ready fail from now on, so that load balancers probing the
// admin endpoint stop sending new connections, and changes nothing else:
// the routes keep accepting until Shutdown. Shutdown and Close drain too.
func (r *Runner) Drain() { r.state.Store(stateDraining) }
