package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/tunnelwasm/tunnel/internal/clienthello"
)

// ErrNotAllowed is wrapped by the error a handshake fails with when the
// client's certificate verified but matches no allow rule.
var ErrNotAllowed = errors.New("matches no allow rule")

// Check validates the rules: SPKI pins must parse and DNS patterns must be
// names or "*.name".
func (a Allow) Check() error {
	for _, p := range a.SPKISHA256 {
		if _, err := ParseSPKI(p); err != nil {
			return fmt.Errorf("tls: allow: %w", err)
		}
	}
	for _, d := range a.DNS {
		if err := clienthello.CheckPattern(d); err != nil || d == "*" {
			return fmt.Errorf("tls: allow: dns %q is not a DNS name or *.name (to accept every verified client, use all = true)", d)
		}
	}
	return nil
}

// verifier returns the VerifyConnection of a server with a client CA.
func (a Allow) verifier() (func(tls.ConnectionState) error, error) {
	if err := a.Check(); err != nil {
		return nil, err
	}
	if a.Empty() {
		return nil, errors.New("tls: client_ca without allow rules would refuse every client (deny by default); add allow { cn = [...] } (or dns, uri, spki_sha256), or allow { all = true } to accept any certificate client_ca signed")
	}
	pins := map[[sha256.Size]byte]bool{}
	for _, p := range a.SPKISHA256 {
		sum, _ := ParseSPKI(p)
		pins[sum] = true
	}
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			// No certificate: only possible when it is optional.
			return nil
		}
		leaf := cs.PeerCertificates[0]
		if len(cs.VerifiedChains) == 0 {
			return fmt.Errorf("tls: client certificate %s was not verified against client_ca", Subject(leaf))
		}
		if a.Match(leaf, pins) {
			return nil
		}
		return fmt.Errorf("tls: client certificate %s %w (%s)", Subject(leaf), ErrNotAllowed, a.describe())
	}, nil
}

// Match reports whether a certificate passes any rule; pins are the parsed
// SPKISHA256 (nil: parse them here).
func (a Allow) Match(c *x509.Certificate, pins map[[sha256.Size]byte]bool) bool {
	if a.All {
		return true
	}
	for _, cn := range a.CN {
		if c.Subject.CommonName == cn {
			return true
		}
	}
	for _, pat := range a.DNS {
		for _, n := range c.DNSNames {
			if clienthello.MatchName(pat, n) {
				return true
			}
		}
	}
	for _, want := range a.URI {
		for _, u := range c.URIs {
			if u.String() == want {
				return true
			}
		}
	}
	if len(a.SPKISHA256) > 0 {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if pins == nil {
			for _, p := range a.SPKISHA256 {
				if want, err := ParseSPKI(p); err == nil && want == sum {
					return true
				}
			}
		}
		return pins[sum]
	}
	return false
}

// describe lists the rules, for the refusal message.
func (a Allow) describe() string {
	var parts []string
	if len(a.CN) > 0 {
		parts = append(parts, fmt.Sprintf("cn %q", a.CN))
	}
	if len(a.DNS) > 0 {
		parts = append(parts, fmt.Sprintf("dns %q", a.DNS))
	}
	if len(a.URI) > 0 {
		parts = append(parts, fmt.Sprintf("uri %q", a.URI))
	}
	if len(a.SPKISHA256) > 0 {
		parts = append(parts, fmt.Sprintf("spki_sha256 (%d pins)", len(a.SPKISHA256)))
	}
	return "allowed: " + strings.Join(parts, ", ")
}

// Subject describes a certificate for logs: its subject with its DNS and
// URI SANs, e.g. `"CN=alice,O=x" dns=[a.example] uri=[spiffe://x/a]`.
func Subject(c *x509.Certificate) string {
	s := fmt.Sprintf("%q", c.Subject.String())
	if len(c.DNSNames) > 0 {
		s += fmt.Sprintf(" dns=%v", c.DNSNames)
	}
	if len(c.URIs) > 0 {
		uris := make([]string, len(c.URIs))
		for i, u := range c.URIs {
			uris[i] = u.String()
		}
		s += fmt.Sprintf(" uri=%v", uris)
	}
	return s
}
