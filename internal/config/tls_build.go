package config

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/tlsconf"
)

// tlsCache keeps what TLS configs a Builder made, so that a reload with
// unchanged certificate, key and CA files (compared by content) hands the
// route the same *tls.Config, with its session ticket keys, and so that
// every config naming one key_log path appends to one open file.
type tlsCache struct {
	mu      sync.Mutex
	configs map[string]*cachedTLS // by route name and side
	keyLogs map[string]*tlsconf.KeyLog
	// replaced are key logs whose paths were opened anew (the file was
	// removed or replaced); retain closes them.
	replaced []*tlsconf.KeyLog
}

type cachedTLS struct {
	sum [sha256.Size]byte
	cfg *tls.Config
}

// routeTLS loads the TLS configs of route r into hr, reporting a broken
// file at the attribute that names it. The files are read on every build,
// so a reload (SIGHUP, or a change of the config or of a certificate file)
// picks up new certificates; a broken one fails the reload, which keeps
// the running configuration.
func (b *Builder) routeTLS(r *Route, hr *host.Route) hcl.Diagnostics {
	hr.ServerNames = r.ServerNames
	hr.HandshakeTimeout = r.HandshakeTimeout
	hr.AcceptProxy = r.AcceptProxy
	hr.TrustedProxies = r.TrustedProxies
	var diags hcl.Diagnostics
	if t := r.TLS; t != nil {
		s := t.Settings
		kl, d := b.keyLog(t.KeyLog, t.KeyLogRange)
		diags = append(diags, d...)
		if kl != nil {
			s.KeyLog = kl
		}
		l, err := tlsconf.LoadServer(s)
		if err != nil {
			diags = append(diags, tlsDiag(err, map[string]hcl.Range{"key": t.KeyRange, "client_ca": t.ClientCARange, "allow": t.ClientCARange}, t.CertRange))
		} else {
			diags = append(diags, certDiags(l, t.CertRange)...)
			diags = append(diags, namesNotCovered(r, l)...)
			hr.TLS = b.tls.reuse(r.Name+" tls "+t.KeyLog, l)
		}
	}
	if u := r.UpstreamTLS; u != nil {
		s := u.Settings
		kl, d := b.keyLog(u.KeyLog, u.KeyLogRange)
		diags = append(diags, d...)
		if kl != nil {
			s.KeyLog = kl
		}
		l, err := tlsconf.LoadClient(s)
		if err != nil {
			diags = append(diags, tlsDiag(err, map[string]hcl.Range{"key": u.KeyRange, "ca": u.CARange}, u.CertRange))
		} else {
			// Only the certificate's: insecure_skip_verify is warned
			// about by Parse already.
			diags = append(diags, certDiags(l, u.CertRange)...)
			hr.UpstreamTLS = b.tls.reuse(r.Name+" upstream_tls "+u.KeyLog, l)
		}
	}
	return diags
}

// namesNotCovered warns about each of r's server_names that the
// certificate its tls block presents does not cover: the route is chosen
// for that name, and then every client that verifies the server (browsers,
// curl, crypto/tls) refuses the certificate. A "*.suffix" pattern is
// checked with one name it matches; "*" (any name) is not checked.
func namesNotCovered(r *Route, l *tlsconf.Loaded) hcl.Diagnostics {
	if l.Leaf == nil {
		return nil
	}
	var diags hcl.Diagnostics
	for _, name := range r.ServerNames {
		host := name
		if name == "*" {
			continue
		}
		if suffix, ok := strings.CutPrefix(name, "*."); ok {
			host = "any." + suffix
		}
		if err := l.Leaf.VerifyHostname(host); err != nil {
			rng := r.ServerNamesRange
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Certificate does not cover a server name",
				Detail:   fmt.Sprintf("Route %q is chosen for %q, but the certificate of its tls block (%s) is not valid for it: clients that verify the server will refuse the connection. Add the name to the certificate's DNS names, or serve it from a route whose certificate has it.", r.Name, name, tlsconf.Subject(l.Leaf)),
				Subject:  &rng,
			})
		}
	}
	return diags
}

// tlsDiag reports a load error at the range of the setting it is about.
func tlsDiag(err error, ranges map[string]hcl.Range, fallback hcl.Range) *hcl.Diagnostic {
	rng, ok := ranges[tlsconf.Setting(err)]
	if !ok {
		rng = fallback
	}
	msg := strings.TrimPrefix(err.Error(), "tls: ")
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Cannot load TLS files",
		Detail:   upperFirst(strings.TrimRight(msg, ".")) + ".",
		Subject:  &rng,
	}
}

// certDiags are the warnings about the certificate l presents, at rng: a
// chain out of order, and a certificate expired or not yet valid (an
// expired one is marked for refuseExpired, Extra).
func certDiags(l *tlsconf.Loaded, rng hcl.Range) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if l.ChainWarning != "" {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Certificate chain out of order", Detail: upperFirst(l.ChainWarning) + ".", Subject: &rng})
	}
	if l.CertNotValid == "" {
		return diags
	}
	d := &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Certificate not valid now", Detail: upperFirst(l.CertNotValid) + ".", Subject: &rng}
	if l.Expired {
		d.Extra = expiredCert{}
	}
	return append(diags, d)
}

// expiredCert marks the diagnostic about an expired certificate.
type expiredCert struct{}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// reuse returns the config cached under key when its sum is l's and it
// writes the same key log (nothing changed), else caches and returns l's.
func (c *tlsCache) reuse(key string, l *tlsconf.Loaded) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.configs[key]; old != nil && old.sum == l.Sum && old.cfg.KeyLogWriter == l.Config.KeyLogWriter {
		return old.cfg
	}
	if c.configs == nil {
		c.configs = map[string]*cachedTLS{}
	}
	c.configs[key] = &cachedTLS{sum: l.Sum, cfg: l.Config}
	return l.Config
}

// keyLog is the key log at path (tlsCache.keyLog), or only its check when
// the build validates: tunnel validate must not create files.
func (b *Builder) keyLog(path string, rng hcl.Range) (*tlsconf.KeyLog, hcl.Diagnostics) {
	if !b.Validate || path == "" {
		return b.tls.keyLog(path, rng)
	}
	if err := tlsconf.CheckKeyLog(path); err != nil {
		return nil, keyLogDiag(err, rng)
	}
	return nil, nil
}

// keyLogDiag is the error of a key log that cannot be used, at rng.
func keyLogDiag(err error, rng hcl.Range) hcl.Diagnostics {
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot open key_log", Detail: upperFirst(strings.TrimPrefix(err.Error(), "tls: ")) + ".", Subject: &rng}}
}

// keyLog opens the key log at path once, then shares it. Each build checks
// the path again, as validate would: a file now readable by others is an
// error, and one removed or replaced is opened anew (created if missing);
// the one it replaces is closed by the next retain, once no applied route
// uses it.
func (c *tlsCache) keyLog(path string, rng hcl.Range) (*tlsconf.KeyLog, hcl.Diagnostics) {
	if path == "" {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	diag := func(err error) hcl.Diagnostics { return keyLogDiag(err, rng) }
	old := c.keyLogs[path]
	if old != nil {
		moved, err := old.Recheck()
		if err != nil {
			return nil, diag(err)
		}
		if !moved {
			return old, nil
		}
	}
	kl, err := tlsconf.OpenKeyLog(path)
	if err != nil {
		return nil, diag(err)
	}
	if c.keyLogs == nil {
		c.keyLogs = map[string]*tlsconf.KeyLog{}
	}
	if old != nil {
		c.replaced = append(c.replaced, old)
	}
	c.keyLogs[path] = kl
	return kl, nil
}

// retain forgets the configs of routes f no longer has and closes the key
// logs it no longer names (connections still using them drop their lines).
func (c *tlsCache) retain(f *File, logger *slog.Logger) {
	keepCfg, keepLog := map[string]bool{}, map[string]bool{}
	for _, r := range f.Routes {
		if t := r.TLS; t != nil {
			keepCfg[r.Name+" tls "+t.KeyLog] = true
			keepLog[t.KeyLog] = true
		}
		if u := r.UpstreamTLS; u != nil {
			keepCfg[r.Name+" upstream_tls "+u.KeyLog] = true
			keepLog[u.KeyLog] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.configs {
		if !keepCfg[k] {
			delete(c.configs, k)
		}
	}
	for p, kl := range c.keyLogs {
		if !keepLog[p] {
			c.closeKeyLog(p, kl, logger)
		}
	}
	c.closeReplaced(logger)
}

// closeReplaced closes the key logs whose paths name other files now.
func (c *tlsCache) closeReplaced(logger *slog.Logger) {
	for _, kl := range c.replaced {
		closeLogged(kl, logger)
	}
	c.replaced = nil
}

// close closes every key log.
func (c *tlsCache) close(logger *slog.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, kl := range c.keyLogs {
		c.closeKeyLog(p, kl, logger)
	}
	c.closeReplaced(logger)
	c.configs = nil
}

func (c *tlsCache) closeKeyLog(path string, kl *tlsconf.KeyLog, logger *slog.Logger) {
	closeLogged(kl, logger)
	delete(c.keyLogs, path)
}

// closeLogged closes kl, logging the lines it lost and a failed close.
func closeLogged(kl *tlsconf.KeyLog, logger *slog.Logger) {
	if err := kl.Err(); err != nil {
		logger.Warn("key_log lost lines", "path", kl.Path(), "err", err)
	}
	if err := kl.Close(); err != nil {
		logger.Warn("closing key_log", "path", kl.Path(), "err", err)
	}
}
