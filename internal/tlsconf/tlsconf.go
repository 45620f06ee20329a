// Package tlsconf builds the *tls.Config values of a route from plain
// settings: the listen side (terminate TLS, optionally with mutual TLS and
// allow rules) and the target side (originate TLS).
//
// Every error names the file and what is wrong with it: a missing file, a
// PEM file without a certificate, a key that does not belong to its
// certificate. An expired certificate is not an error (clients decide) but
// a warning in Loaded.Warnings.
//
// Mutual TLS follows ghostunnel: when ClientCA is set, a client must present
// a certificate signed by it AND match an allow rule (by CN, DNS SAN, URI
// SAN or SPKI pin), or Allow.All must say that any verified client will do.
// Denial is the default.
//
// Loaded.Sum hashes the bytes of every file read (certificate, key, CAs) so
// a reload can tell that nothing changed and keep the config it has, with
// its session ticket keys.
package tlsconf

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tunnelwasm/tunnel/internal/regfile"
)

// MaxPEMFile bounds the size of a certificate, key or CA file.
const MaxPEMFile = 1 << 20

// ServerSettings describe the listen side of a route that terminates TLS.
type ServerSettings struct {
	// Cert and Key are PEM files: the certificate chain (leaf first) and
	// its private key.
	Cert, Key string
	// ClientCA is a PEM file of CA certificates client certificates must
	// chain to; empty means no mutual TLS.
	ClientCA string
	// OptionalClientCert lets clients without a certificate in (a
	// certificate that is given must still verify and pass Allow); the
	// default with ClientCA is to require one (require_client_cert =
	// false sets it).
	OptionalClientCert bool
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string
	// ALPN lists the application protocols offered, in preference order.
	ALPN []string
	// Allow restricts which verified clients are accepted; it needs
	// ClientCA.
	Allow Allow
	// KeyLog, when set, receives the session secrets in the NSS key log
	// format (see OpenKeyLog).
	KeyLog io.Writer
	// Logger, when set, receives the warnings (Server only; LoadServer
	// returns them).
	Logger *slog.Logger
}

// Allow lists the client certificates accepted by a route with a ClientCA:
// a verified certificate is let in when any one rule matches it.
type Allow struct {
	// All accepts any certificate that verifies against ClientCA.
	All bool
	// CN matches the subject's common name exactly.
	CN []string
	// DNS matches a DNS SAN: exactly (case-insensitive), or "*.example.com"
	// for one label in front of example.com.
	DNS []string
	// URI matches a URI SAN exactly (e.g. spiffe://example.org/web).
	URI []string
	// SPKISHA256 pins the SHA-256 of the certificate's
	// SubjectPublicKeyInfo, in hex (colons allowed) or base64.
	SPKISHA256 []string
}

// Empty reports whether a has no rule at all.
func (a Allow) Empty() bool {
	return !a.All && len(a.CN) == 0 && len(a.DNS) == 0 && len(a.URI) == 0 && len(a.SPKISHA256) == 0
}

// ClientSettings describe the target side of a route that originates TLS.
type ClientSettings struct {
	// CA is a PEM file of the CAs the target's certificate must chain to;
	// empty means the system's roots.
	CA string
	// ServerName is the name sent as SNI and verified in the target's
	// certificate; empty lets the caller fill in the target's host.
	ServerName string
	// Cert and Key, both or neither, are the client certificate presented
	// to a target that asks for one.
	Cert, Key string
	// InsecureSkipVerify accepts any certificate from the target. Only for
	// tests: it makes TLS useless against an active attacker.
	InsecureSkipVerify bool
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string
	// ALPN lists the application protocols offered to the target.
	ALPN []string
	// KeyLog, when set, receives the session secrets (see OpenKeyLog).
	KeyLog io.Writer
	// Logger, when set, receives the warnings (Client only).
	Logger *slog.Logger
}

// Loaded is a built config with what was learnt on the way.
type Loaded struct {
	Config *tls.Config
	// Sum is the SHA-256 over the settings and the bytes of every file
	// read: equal sums mean an identical config.
	Sum [sha256.Size]byte
	// Leaf is the certificate presented (nil for a client without one).
	Leaf *x509.Certificate
	// Warnings are problems that do not stop the config from working
	// (an expired certificate, a disabled verification).
	Warnings []string
	// CertNotValid is the warning, also in Warnings, about the certificate
	// presented when it is outside its validity period ("" otherwise);
	// Expired says its period is over (rather than not begun).
	CertNotValid string
	Expired      bool
	// ChainWarning is the warning, also in Warnings, about a chain whose
	// certificates do not each sign the one before ("" otherwise).
	ChainWarning string
}

// Server builds the listen-side config; warnings go to s.Logger.
func Server(s ServerSettings) (*tls.Config, error) {
	l, err := LoadServer(s)
	if err != nil {
		return nil, err
	}
	logWarnings(s.Logger, l.Warnings)
	return l.Config, nil
}

// Client builds the target-side config; warnings go to s.Logger.
func Client(s ClientSettings) (*tls.Config, error) {
	l, err := LoadClient(s)
	if err != nil {
		return nil, err
	}
	logWarnings(s.Logger, l.Warnings)
	return l.Config, nil
}

func logWarnings(logger *slog.Logger, warnings []string) {
	if logger == nil {
		return
	}
	for _, w := range warnings {
		logger.Warn("tls: " + w)
	}
}

// hasher accumulates the bytes that make a config.
type hasher struct{ buf bytes.Buffer }

func (h *hasher) add(parts ...string) {
	for _, p := range parts {
		fmt.Fprintf(&h.buf, "%d:%s;", len(p), p)
	}
}

func (h *hasher) sum() [sha256.Size]byte { return sha256.Sum256(h.buf.Bytes()) }

// LoadServer builds the listen-side config.
func LoadServer(s ServerSettings) (*Loaded, error) {
	if s.Cert == "" || s.Key == "" {
		return nil, errors.New("tls: both cert and key are needed to terminate TLS")
	}
	var h hasher
	h.add("server", s.MinVersion, strings.Join(s.ALPN, ","), fmt.Sprint(s.OptionalClientCert, s.Allow))
	l := &Loaded{}
	pair, leaf, err := loadPair(s.Cert, s.Key, &h)
	if err != nil {
		return nil, err
	}
	l.Leaf = leaf
	l.certValidity(s.Cert, leaf, time.Now())
	if l.ChainWarning = chainWarning(s.Cert, pair); l.ChainWarning != "" {
		l.Warnings = append(l.Warnings, l.ChainWarning)
	}
	minV, err := ParseVersion(s.MinVersion)
	if err != nil {
		return nil, inSetting("min_version", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   minV,
		NextProtos:   append([]string(nil), s.ALPN...),
		KeyLogWriter: s.KeyLog,
	}
	if s.ClientCA == "" {
		if !s.Allow.Empty() {
			return nil, inSetting("allow", errors.New("tls: allow rules need client_ca: without it no client certificate is asked for"))
		}
	} else {
		pool, err := loadPool(s.ClientCA, "client_ca", &h)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if s.OptionalClientCert {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
		check, err := s.Allow.verifier()
		if err != nil {
			return nil, inSetting("allow", err)
		}
		cfg.VerifyConnection = check
	}
	l.Config = cfg
	l.Sum = h.sum()
	return l, nil
}

// LoadClient builds the target-side config.
func LoadClient(s ClientSettings) (*Loaded, error) {
	var h hasher
	h.add("client", s.ServerName, s.MinVersion, strings.Join(s.ALPN, ","), fmt.Sprint(s.InsecureSkipVerify))
	l := &Loaded{}
	minV, err := ParseVersion(s.MinVersion)
	if err != nil {
		return nil, inSetting("min_version", err)
	}
	cfg := &tls.Config{
		ServerName:         s.ServerName,
		MinVersion:         minV,
		NextProtos:         append([]string(nil), s.ALPN...),
		InsecureSkipVerify: s.InsecureSkipVerify,
		KeyLogWriter:       s.KeyLog,
	}
	if s.InsecureSkipVerify {
		l.Warnings = append(l.Warnings, "insecure_skip_verify: the target's certificate is not verified, so anyone on the path can impersonate it")
	}
	if s.CA != "" {
		pool, err := loadPool(s.CA, "ca", &h)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case s.Cert != "" && s.Key != "":
		pair, leaf, err := loadPair(s.Cert, s.Key, &h)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
		l.Leaf = leaf
		l.certValidity(s.Cert, leaf, time.Now())
		if l.ChainWarning = chainWarning(s.Cert, pair); l.ChainWarning != "" {
			l.Warnings = append(l.Warnings, l.ChainWarning)
		}
	case s.Cert != "":
		return nil, fmt.Errorf("tls: cert %s is given without its key", s.Cert)
	case s.Key != "":
		return nil, fmt.Errorf("tls: key %s is given without its cert", s.Key)
	}
	l.Config = cfg
	l.Sum = h.sum()
	return l, nil
}

// ParseVersion reads a min_version: "" or "1.2" is TLS 1.2, "1.3" TLS 1.3.
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls: min_version %q is not \"1.2\" or \"1.3\"", v)
}

// readPEMFile reads a file of at most MaxPEMFile bytes.
func readPEMFile(path, what string) ([]byte, error) {
	f, err := regfile.Open(path) // a named pipe must not hang the load
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("tls: %s %s does not exist: %w", what, path, err)
		}
		return nil, fmt.Errorf("tls: %s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("tls: %s %s: %w", what, path, err)
	}
	if len(b) > MaxPEMFile {
		return nil, fmt.Errorf("tls: %s %s is larger than %d bytes; is it a PEM file?", what, path, MaxPEMFile)
	}
	return b, nil
}

// blockTypes lists the PEM block types in data, for error messages.
func blockTypes(data []byte) []string {
	var types []string
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return types
		}
		types = append(types, b.Type)
	}
}

func describe(types []string) string {
	if len(types) == 0 {
		return "no PEM block at all"
	}
	return "only " + strings.Join(types, ", ")
}

// SettingError is a load error with the setting at fault: "cert", "key",
// "client_ca", "ca", "min_version" or "allow".
type SettingError struct {
	Setting string
	Err     error
}

// Error is the underlying error's text, which names the file.
func (e *SettingError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *SettingError) Unwrap() error { return e.Err }

// Setting returns the setting an error of LoadServer or LoadClient is
// about, or "".
func Setting(err error) string {
	var se *SettingError
	if errors.As(err, &se) {
		return se.Setting
	}
	return ""
}

func inSetting(setting string, err error) error {
	if err == nil {
		return nil
	}
	return &SettingError{Setting: setting, Err: err}
}

// loadPair reads a certificate chain and its key, with errors naming the
// file at fault.
func loadPair(certPath, keyPath string, h *hasher) (tls.Certificate, *x509.Certificate, error) {
	pair, leaf, setting, err := loadPairFiles(certPath, keyPath, h)
	return pair, leaf, inSetting(setting, err)
}

func loadPairFiles(certPath, keyPath string, h *hasher) (tls.Certificate, *x509.Certificate, string, error) {
	certPEM, err := readPEMFile(certPath, "cert")
	if err != nil {
		return tls.Certificate{}, nil, "cert", err
	}
	keyPEM, err := readPEMFile(keyPath, "key")
	if err != nil {
		return tls.Certificate{}, nil, "key", err
	}
	h.add(string(certPEM), string(keyPEM))
	certTypes, keyTypes := blockTypes(certPEM), blockTypes(keyPEM)
	if !contains(certTypes, "CERTIFICATE") {
		hint := ""
		if countKeys(certTypes) > 0 {
			hint = " (a private key: are cert and key swapped?)"
		}
		return tls.Certificate{}, nil, "cert", fmt.Errorf("tls: cert %s has no CERTIFICATE block, %s%s", certPath, describe(certTypes), hint)
	}
	if countKeys(keyTypes) == 0 {
		hint := ""
		if contains(keyTypes, "CERTIFICATE") {
			hint = " (a certificate: are cert and key swapped?)"
		}
		return tls.Certificate{}, nil, "key", fmt.Errorf("tls: key %s has no PRIVATE KEY block, %s%s", keyPath, describe(keyTypes), hint)
	}
	if encryptedKey(keyPEM) {
		return tls.Certificate{}, nil, "key", fmt.Errorf("tls: key %s is encrypted (protected by a passphrase), which the tunnel cannot ask for; write it decrypted, readable by the tunnel alone: openssl pkey -in %s -out key.pem", keyPath, keyPath)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			hint := ""
			if n := countOf(certTypes, "CERTIFICATE"); n > 1 {
				hint = fmt.Sprintf(" (%s holds %d certificates: the key's own, the leaf, must come first, then its chain)", certPath, n)
			}
			if n := countKeys(keyTypes); n > 1 {
				hint += fmt.Sprintf(" (%s holds %d private keys: only the first is used)", keyPath, n)
			}
			return tls.Certificate{}, nil, "key", fmt.Errorf("tls: key %s does not match the certificate in %s%s: %w", keyPath, certPath, hint, err)
		}
		if strings.Contains(err.Error(), "private key") {
			return tls.Certificate{}, nil, "key", fmt.Errorf("tls: key %s (for cert %s): %w", keyPath, certPath, err)
		}
		return tls.Certificate{}, nil, "cert", fmt.Errorf("tls: cert %s with key %s: %w", certPath, keyPath, err)
	}
	// X509KeyPair parses the leaf alone: a chain certificate that does
	// not parse would be sent to every client, which would refuse it.
	for i, der := range pair.Certificate[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return tls.Certificate{}, nil, "cert", fmt.Errorf("tls: cert %s: certificate %d of the chain does not parse: %w", certPath, i+2, err)
		}
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, nil, "cert", fmt.Errorf("tls: cert %s: %w", certPath, err)
		}
		pair.Leaf = leaf
	}
	return pair, leaf, "", nil
}

// encryptedKey reports whether the first private key of data is encrypted
// (PKCS #8 "ENCRYPTED PRIVATE KEY", or a legacy PEM "Proc-Type: 4,ENCRYPTED").
func encryptedKey(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
		}
	}
}

// chainWarning says when a certificate of the chain in path is not the
// issuer of the one before it (a chain out of order, or another CA's certificate):
// clients that do not find the issuer elsewhere refuse the chain.
func chainWarning(path string, pair tls.Certificate) string {
	prev := pair.Leaf
	for i, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil || prev == nil {
			return ""
		}
		// By name, not signature: an old algorithm (SHA-1) is not a
		// chain out of order.
		if !bytes.Equal(prev.RawIssuer, c.RawSubject) {
			return fmt.Sprintf("cert %s: certificate %d (%q) is not the issuer of certificate %d (%q): the chain must go from the leaf to its issuer, in order; clients may refuse it", path, i+2, c.Subject.String(), i+1, prev.Subject.String())
		}
		prev = c
	}
	return ""
}

// countKeys counts the private key blocks in types.
func countKeys(types []string) int {
	n := 0
	for _, t := range types {
		if strings.HasSuffix(t, "PRIVATE KEY") {
			n++
		}
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// loadPool reads a PEM file of CA certificates.
func loadPool(path, what string, h *hasher) (*x509.CertPool, error) {
	pool, err := loadPoolFile(path, what, h)
	return pool, inSetting(what, err)
}

func loadPoolFile(path, what string, h *hasher) (*x509.CertPool, error) {
	data, err := readPEMFile(path, what)
	if err != nil {
		return nil, err
	}
	h.add(string(data))
	pool := x509.NewCertPool()
	n := 0
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls: %s %s: certificate %d: %w", what, path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tls: %s %s has no CERTIFICATE block, %s", what, path, describe(blockTypes(data)))
	}
	return pool, nil
}

// certValidity warns about the presented certificate c (from path) when
// it is outside its validity period.
func (l *Loaded) certValidity(path string, c *x509.Certificate, now time.Time) {
	switch {
	case now.After(c.NotAfter):
		l.CertNotValid, l.Expired = fmt.Sprintf("cert %s expired on %s (%s ago); clients will refuse it", path, c.NotAfter.UTC().Format(time.RFC3339), now.Sub(c.NotAfter).Round(time.Second)), true
	case now.Before(c.NotBefore):
		l.CertNotValid = fmt.Sprintf("cert %s is not valid before %s; clients will refuse it until then", path, c.NotBefore.UTC().Format(time.RFC3339))
	default:
		return
	}
	l.Warnings = append(l.Warnings, l.CertNotValid)
}

// ParseSPKI reads a spki_sha256 pin: 64 hex digits (colons allowed, any
// case) or 44 characters of standard base64.
func ParseSPKI(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if b, err := hex.DecodeString(h); err == nil && len(b) == sha256.Size {
		copy(sum[:], b)
		return sum, nil
	}
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil && len(b) == sha256.Size {
		copy(sum[:], b)
		return sum, nil
	}
	return sum, fmt.Errorf("spki_sha256 %q is not a SHA-256 in hex (64 digits) or base64 (44 characters); compute it with: openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | sha256sum", s)
}

// countOf counts the blocks of type t in types.
func countOf(types []string, t string) int {
	n := 0
	for _, x := range types {
		if x == t {
			n++
		}
	}
	return n
}
