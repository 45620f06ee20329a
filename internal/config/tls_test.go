package config

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/tunnelwasm/tunnel/internal/testcert"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// tlsFiles writes a CA, a server pair and a client CA into dir under fixed
// names, for configs to name.
func tlsFiles(t *testing.T, dir string) (*testcert.CA, *testcert.Pair) {
	t.Helper()
	ca := testcert.NewCA(t, "config CA")
	srv := ca.Server(t)
	srv.WriteFiles(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	copyFile(t, ca.CertFile, filepath.Join(dir, "ca.pem"))
	return ca, srv
}

const tlsRoutes = `
route "web" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:8080"
  handshake_timeout = "3s"
  tls {
    cert        = "cert.pem"
    key         = "key.pem"
    client_ca   = "ca.pem"
    min_version = "1.3"
    alpn        = ["h2", "http/1.1"]
    key_log     = "keys.log"
    allow {
      cn  = ["alice"]
      uri = ["spiffe://example.org/a"]
    }
  }
  upstream_tls {
    ca          = "ca.pem"
    server_name = "backend.example"
    key_log     = "keys.log"
  }
}

route "a" {
  listen        = "127.0.0.1:9443"
  target        = "127.0.0.1:8001"
  server_names  = ["a.example", "*.b.example"]
  accept_proxy  = true
  trusted_cidrs = ["10.0.0.0/8", "::ffff:192.0.2.7"]
}

route "default" {
  listen        = "127.0.0.1:9443"
  target        = "127.0.0.1:8002"
  server_names  = ["*"]
  accept_proxy  = true
  trusted_cidrs = ["10.0.0.0/8", "192.0.2.7"] # the address's, as route "a"'s
}
`

// TestBuildTLS maps the blocks to host.Route: the certificate, mutual TLS,
// ALPN, version, the upstream side, SNI names and trusted networks; one
// key log file is shared by both sides.
func TestBuildTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, srv := tlsFiles(t, dir)
	f, diags := parseString(t, dir, tlsRoutes)
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags, f.Files))
	}
	if got := strings.Join(gotDiags(diags), ","); got != "12: warning: key_log records secrets,21: warning: key_log records secrets" {
		t.Fatalf("warnings: %s", got)
	}
	var b Builder
	defer b.Close(context.Background())
	set, diags := b.Build(context.Background(), f, diags)
	if set == nil {
		t.Fatal(FormatDiagnostics(diags, f.Files))
	}
	web, a, def := set.Routes[0], set.Routes[1], set.Routes[2]
	c := web.TLS
	if c == nil || c.Certificates[0].Leaf.SerialNumber.Cmp(srv.Cert.SerialNumber) != 0 {
		t.Fatalf("web: TLS certificate not the one in cert.pem")
	}
	if c.ClientAuth != tls.RequireAndVerifyClientCert || c.MinVersion != tls.VersionTLS13 || strings.Join(c.NextProtos, ",") != "h2,http/1.1" || c.VerifyConnection == nil {
		t.Fatalf("web: %+v", c)
	}
	u := web.UpstreamTLS
	if u == nil || u.ServerName != "backend.example" || u.RootCAs == nil || u.InsecureSkipVerify {
		t.Fatalf("web upstream: %+v", u)
	}
	if c.KeyLogWriter == nil || c.KeyLogWriter != u.KeyLogWriter {
		t.Fatal("the two sides do not share the key log")
	}
	if st, err := os.Stat(filepath.Join(dir, "keys.log")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys.log: %v %v", st, err)
	}
	if web.HandshakeTimeout != 3*time.Second {
		t.Fatalf("handshake timeout %v", web.HandshakeTimeout)
	}
	if strings.Join(a.ServerNames, ",") != "a.example,*.b.example" || strings.Join(def.ServerNames, ",") != "*" {
		t.Fatalf("server names %q %q", a.ServerNames, def.ServerNames)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	if !a.AcceptProxy || fmt.Sprint(a.TrustedProxies) != fmt.Sprint(want) {
		t.Fatalf("accept proxy %v %v", a.AcceptProxy, a.TrustedProxies)
	}
	// What the admin endpoint's /config shows of them.
	sums := Summarize(set.Routes, func(string) net.Addr { return nil })
	notAfter := srv.Cert.NotAfter.UTC().Format(time.RFC3339)
	for i, want := range []string{
		`{"name":"web","listen":"127.0.0.1:0","target":"127.0.0.1:8080","chain":[],` +
			`"tls":{"certificates":[{"subject":"CN=localhost,O=tunnel tests","dns_names":["localhost"],"not_after":"` + notAfter + `"}],` +
			`"client_auth":"RequireAndVerifyClientCert","min_version":"TLS 1.3","alpn":["h2","http/1.1"]},` +
			`"upstream_tls":{"server_name":"backend.example","verify":true}}`,
		`{"name":"a","listen":"127.0.0.1:9443","target":"127.0.0.1:8001","chain":[],"server_names":["a.example","*.b.example"],` +
			`"accept_proxy":true,"trusted_cidrs":["10.0.0.0/8","192.0.2.7/32"]}`,
	} {
		b, err := json.Marshal(sums[i])
		if err != nil || string(b) != want {
			t.Errorf("summary of route %d:\n%s %v\nwant\n%s", i, b, err, want)
		}
	}
	set.Close()
}

// TestBuildTLSReload: a rebuild with unchanged files (by content) keeps the
// same *tls.Config, and with it the session ticket keys; a new certificate
// gives a new one; a broken one fails the build with a diagnostic at the
// attribute naming the file; an expired one warns.
func TestBuildTLSReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := tlsFiles(t, dir)
	src := `
route "web" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:8080"
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}
`
	var b Builder
	defer b.Close(context.Background())
	build := func() (*tls.Config, string) {
		t.Helper()
		f, diags := parseString(t, dir, src)
		set, d := b.Build(context.Background(), f, diags)
		diags = append(diags, d...)
		out := FormatDiagnostics(diags, f.Files)
		if set == nil {
			return nil, out
		}
		defer set.Close()
		b.Retain(context.Background(), f)
		return set.Routes[0].TLS, out
	}
	first, _ := build()
	// The same bytes rewritten: unchanged.
	data, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	writeFile(t, filepath.Join(dir, "cert.pem"), string(data))
	if again, _ := build(); again != first {
		t.Fatal("an unchanged certificate gave a new tls.Config")
	}
	next := ca.Server(t, "next.example")
	next.WriteFiles(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	second, _ := build()
	if second == first || second.Certificates[0].Leaf.Subject.CommonName != "next.example" {
		t.Fatal("a new certificate was not picked up")
	}
	// A key of another certificate: the error is at the key attribute.
	other := ca.Server(t)
	writeFile(t, filepath.Join(dir, "key.pem"), string(other.KeyPEM))
	cfg, out := build()
	keyPath := filepath.Join(dir, "key.pem")
	want := fmt.Sprintf("tunnel.hcl:7:12: error: Cannot load TLS files\n  7 |     key  = \"key.pem\"\n    |            ^^^^^^^^^\n    hint: Key %s does not match the certificate in %s:", keyPath, filepath.Join(dir, "cert.pem"))
	if cfg != nil || !strings.Contains(out, want) {
		t.Fatalf("mismatched key:\n%s\nwant it to contain\n%s", out, want)
	}
	// An expired certificate: a warning at cert.
	old := ca.Issue(t, testcert.Options{CommonName: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	old.WriteFiles(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	cfg, out = build()
	if cfg == nil || !strings.Contains(out, "tunnel.hcl:6:12: warning: Certificate not valid now") || !strings.Contains(out, "expired on") {
		t.Fatalf("expired:\n%s", out)
	}
	// A chain whose second certificate did not issue the leaf: a warning
	// at cert, the route still built.
	fresh := ca.Server(t)
	otherCA := testcert.NewCA(t, "unrelated CA")
	caPEM, _ := os.ReadFile(otherCA.CertFile)
	writeFile(t, filepath.Join(dir, "cert.pem"), string(fresh.CertPEM)+string(caPEM))
	writeFile(t, filepath.Join(dir, "key.pem"), string(fresh.KeyPEM))
	cfg, out = build()
	if cfg == nil || !strings.Contains(out, "tunnel.hcl:6:12: warning: Certificate chain out of order") || !strings.Contains(out, "is not the issuer of certificate 1") {
		t.Fatalf("chain out of order:\n%s", out)
	}
	// A missing file.
	os.Remove(filepath.Join(dir, "cert.pem"))
	if cfg, out = build(); cfg != nil || !strings.Contains(out, "6:12: error: Cannot load TLS files") || !strings.Contains(out, "does not exist") {
		t.Fatalf("missing:\n%s", out)
	}
}

// TestReloadBrokenCertificate: through the Runner, a certificate file
// replaced by junk fails the reload (naming the file) and keeps the running
// route; a good new one is then picked up by the file watcher.
func TestReloadBrokenCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := tlsFiles(t, dir)
	h := startIn(t, dir, certRoute)
	certPath := filepath.Join(dir, "cert.pem")
	writeFile(t, certPath, "not a certificate\n")
	r := h.waitReload()
	var le *LoadError
	if !errors.As(r.Err, &le) || !strings.Contains(r.Err.Error(), "Cert "+certPath+" has no CERTIFICATE block") {
		t.Fatalf("reload = %+v", r)
	}
	if h.r.Addr("r") == nil {
		t.Fatal("the running route is gone")
	}
	ca.Server(t, "new.example").WriteFiles(t, certPath, filepath.Join(dir, "key.pem"))
	if r = h.waitCertReload(); r.Err != nil {
		t.Fatalf("reload = %v", r.Err)
	}
}

// certRoute terminates TLS with dir's cert.pem and key.pem (tlsFiles).
const certRoute = `
route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}
`

// waitCertReload waits for the reload that follows new certificate and
// key files: the key may be read before it is rewritten, a mismatch, and
// then there is another reload.
func (h *harness) waitCertReload() Reload {
	h.t.Helper()
	for {
		r := h.waitReload()
		if r.Err == nil || !strings.Contains(r.Err.Error(), "does not match") {
			return r
		}
	}
}

// startIn runs config from dir, whose files (certificates) are in place.
func startIn(t *testing.T, dir, config string) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, reloads: make(chan Reload, 100), hup: make(chan os.Signal, 1), log: &testkit.Buffer{}, done: make(chan error, 1)}
	h.path = filepath.Join(dir, "tunnel.hcl")
	writeFile(t, h.path, config)
	h.r = &Runner{
		Path:     h.path,
		Logger:   slog.New(slog.NewTextHandler(h.log, nil)),
		OnReload: func(r Reload) { h.reloads <- r },
		Debounce: 20 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if err := h.r.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	go func() { h.done <- h.r.Run(ctx, h.hup) }()
	t.Cleanup(h.stop)
	return h
}

// TestRebuildKeepsSessionTickets: because an unchanged build hands out the
// same tls.Config, a client resumes its session across a reload; a config
// built afresh (what the cache avoids) has new ticket keys and cannot.
func TestRebuildKeepsSessionTickets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, _ := tlsFiles(t, dir)
	src := "route \"web\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:8080\"\n  tls {\n    cert = \"cert.pem\"\n    key  = \"key.pem\"\n  }\n}\n"
	var b Builder
	defer b.Close(context.Background())
	build := func() *tls.Config {
		f, diags := parseString(t, dir, src)
		set, d := b.Build(context.Background(), f, diags)
		if set == nil {
			t.Fatal(FormatDiagnostics(append(diags, d...), f.Files))
		}
		defer set.Close()
		return set.Routes[0].TLS
	}
	cache := tls.NewLRUClientSessionCache(4)
	resumed := func(srv *tls.Config) bool {
		t.Helper()
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		done := make(chan error, 1)
		go func() {
			s := tls.Server(c2, srv)
			if err := s.Handshake(); err != nil {
				done <- err
				return
			}
			_, err := s.Write([]byte("x")) // the ticket travels after the handshake
			done <- err
		}()
		c := tls.Client(c1, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", ClientSessionCache: cache})
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().DidResume
	}
	first := build()
	if resumed(first) {
		t.Fatal("resumed a first session")
	}
	if !resumed(build()) {
		t.Fatal("a rebuild with unchanged files lost the session tickets")
	}
	fresh := first.Clone()
	fresh.SetSessionTicketKeys([][32]byte{{1}})
	if resumed(fresh) {
		t.Fatal("resumed against new ticket keys")
	}
}

// TestTLSSettings: validate -v's lines name the certificate, its subject
// and expiry, the client CA, the upstream verification, the server names
// and the trusted networks.
func TestTLSSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, srv := tlsFiles(t, dir)
	f, diags := parseString(t, dir, tlsRoutes)
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags, f.Files))
	}
	got := f.Settings()
	want := []string{
		fmt.Sprintf(`route "web": terminates TLS 1.3+ with %s ("CN=localhost,O=tunnel tests" dns=[localhost], expires %s), clients verified by %s; originates TLS to the target, verified by %s as backend.example`,
			filepath.Join(dir, "cert.pem"), srv.Cert.NotAfter.UTC().Format(time.RFC3339), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.pem")),
		`route "a": chosen by server name a.example, *.b.example; PROXY headers from 10.0.0.0/8, 192.0.2.7/32`,
		`route "default": chosen by server name *; PROXY headers from 10.0.0.0/8, 192.0.2.7/32`,
	}
	if len(got) < len(want) || strings.Join(got[len(got)-3:], "\n") != strings.Join(want, "\n") {
		t.Fatalf("Settings:\n%s\nwant it to end with:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBuildKeyLogRechecked: each build checks the key_log path again, as
// validate does. A reload once kept writing secrets to the file it had
// opened at start, deleted or replaced since, and accepted a key_log that
// others could read, which validate and a start refuse.
func TestBuildKeyLogRechecked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsFiles(t, dir)
	src := `
route "web" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:8080"
  tls {
    cert    = "cert.pem"
    key     = "key.pem"
    key_log = "keys.log"
  }
}
`
	keys := filepath.Join(dir, "keys.log")
	var b Builder
	defer b.Close(context.Background())
	build := func() (*Set, string) {
		t.Helper()
		f, diags := parseString(t, dir, src)
		set, diags := b.Build(context.Background(), f, diags)
		if set == nil {
			return nil, FormatDiagnostics(diags, f.Files)
		}
		b.Retain(context.Background(), f)
		return set, ""
	}
	write := func(set *Set, line string) {
		t.Helper()
		if _, err := set.Routes[0].TLS.KeyLogWriter.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	first, msg := build()
	if first == nil {
		t.Fatal(msg)
	}
	defer first.Close()
	write(first, "one\n")

	if err := os.Remove(keys); err != nil {
		t.Fatal(err)
	}
	second, msg := build()
	if second == nil {
		t.Fatalf("rebuild after keys.log was removed: %s", msg)
	}
	defer second.Close()
	write(second, "two\n")
	if b, err := os.ReadFile(keys); err != nil || string(b) != "two\n" {
		t.Fatalf("keys.log after a rebuild that followed its removal: %q, %v; want the new secrets in a new file", b, err)
	}
	if st, err := os.Stat(keys); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the new keys.log: %v, %v; want mode 0600", st, err)
	}

	if err := os.Chmod(keys, 0o644); err != nil {
		t.Fatal(err)
	}
	if set, msg := build(); set != nil || !strings.Contains(msg, "Cannot open key_log") || !strings.Contains(msg, "has mode 0644, readable by others") {
		t.Fatalf("rebuild with keys.log readable by others: built %v; diagnostics:\n%s", set != nil, msg)
	}
	os.Remove(keys)
	if err := os.WriteFile(keys, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if set, msg := build(); set != nil || !strings.Contains(msg, "has mode 0644, readable by others") {
		t.Fatalf("rebuild with keys.log replaced by a file others can read: built %v; diagnostics:\n%s", set != nil, msg)
	}
}

// TestReloadRefusesExpiredCertificate: a reload onto an expired
// certificate (a file copied by mistake) fails and the running one keeps
// serving; at a start it is only a warning. The reload once applied it,
// and every new client got a certificate it refuses.
func TestReloadRefusesExpiredCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, srv := tlsFiles(t, dir)
	h := startIn(t, dir, certRoute)
	old := ca.Issue(t, testcert.Options{CommonName: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	old.WriteFiles(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	r := h.waitCertReload()
	var le *LoadError
	if !errors.As(r.Err, &le) || !strings.Contains(le.Error(), "error: Expired certificate") || !strings.Contains(le.Error(), "restart the tunnel to use it anyway") {
		t.Fatalf("reload onto an expired certificate = %v, want it refused", r.Err)
	}
	c, err := tls.Dial("tcp", h.r.Addr("r").String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("the running certificate after the refused reload: %v", err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(srv.Cert.SerialNumber) != 0 {
		t.Errorf("serves serial %v, want the running certificate's %v", got, srv.Cert.SerialNumber)
	}
}

// TestSharedAddressSettingsDisagree: what belongs to an address shared by
// server name (its cap, PROXY trust, SO_REUSEPORT, handshake deadline) is
// checked by validate, not first by the Proxy when the tunnel starts; an
// explicit handshake_timeout equal to the default agrees with an unset one.
func TestSharedAddressSettingsDisagree(t *testing.T) {
	t.Parallel()
	const src = `
route "a" {
  listen            = "127.0.0.1:9443"
  target            = "127.0.0.1:8001"
  server_names      = ["a.example"]
  max_connections   = 20
  handshake_timeout = "2s"
  reuse_port        = true
  accept_proxy      = true
  trusted_cidrs     = ["10.0.0.0/8"]
}
route "b" {
  listen        = "127.0.0.1:9443"
  target        = "127.0.0.1:8002"
  server_names  = ["b.example"]
  accept_proxy  = true
  trusted_cidrs = ["192.0.2.0/24"]
}
route "c" {
  listen            = "127.0.0.1:9444"
  target            = "127.0.0.1:8001"
  server_names      = ["a.example"]
  handshake_timeout = "10s"
}
route "d" {
  listen       = "127.0.0.1:9444"
  target       = "127.0.0.1:8002"
  server_names = ["*"]
}
`
	f, diags := parseString(t, t.TempDir(), src)
	text := FormatDiagnostics(diags, f.Files)
	for _, name := range []string{"trusted_cidrs", "max_connections", "reuse_port", "handshake_timeout"} {
		if want := "Routes sharing an address disagree on " + name; strings.Count(text, want) != 1 {
			t.Errorf("want one %q in:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "error:"); n != 4 {
		t.Errorf("%d errors, want 4 (routes c and d agree):\n%s", n, text)
	}
}

// TestServerNameNotCovered: a route chosen for a server name its
// certificate is not valid for would be refused by every client that
// verifies it; validate and the build warn at server_names, per name
// (a "*.suffix" pattern checked with a name it matches, "*" not at all).
func TestServerNameNotCovered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsFiles(t, dir) // a certificate for localhost
	f, diags := parseString(t, dir, `
route "sni" {
  listen       = "127.0.0.1:0"
  target       = "127.0.0.1:8080"
  server_names = ["LOCALHOST", "b.example", "*.c.example"]
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}
`)
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags, f.Files))
	}
	var b Builder
	defer b.Close(context.Background())
	set, diags := b.Build(context.Background(), f, diags)
	if set == nil {
		t.Fatal(FormatDiagnostics(diags, f.Files))
	}
	set.Close()
	if got := strings.Join(gotDiags(diags), ","); got != "5: warning: Certificate does not cover a server name,5: warning: Certificate does not cover a server name" {
		t.Fatalf("diagnostics: %s", got)
	}
	text := FormatDiagnostics(diags, f.Files)
	for _, want := range []string{`Route "sni" is chosen for "b.example"`, `Route "sni" is chosen for "*.c.example"`, `dns=[localhost]`} {
		if !strings.Contains(text, want) {
			t.Errorf("diagnostics do not say %q:\n%s", want, text)
		}
	}
}

// TestValidateCreatesNoKeyLog: tunnel validate (Builder.Validate) checks a
// key_log path without creating the file, which the TLS pass found left
// behind by a validate that failed; a path that could not be created is
// still an error. A real build creates it.
func TestValidateCreatesNoKeyLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tlsFiles(t, dir)
	route := func(keyLog string) string {
		return `
route "web" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:8080"
  tls {
    cert    = "cert.pem"
    key     = "key.pem"
    key_log = "` + keyLog + `"
  }
}
`
	}
	build := func(b *Builder, src string) hcl.Diagnostics {
		f, diags := parseString(t, dir, src)
		if diags.HasErrors() {
			t.Fatal(FormatDiagnostics(diags, f.Files))
		}
		set, diags := b.Build(context.Background(), f, diags)
		set.Close()
		b.Close(context.Background())
		return diags
	}
	if diags := build(&Builder{Validate: true}, route("keys.log")); diags.HasErrors() {
		t.Fatalf("validate: %v", diags)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.log")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("validate left keys.log behind: %v", err)
	}
	diags := build(&Builder{Validate: true}, route("no/such/dir/keys.log"))
	if !diags.HasErrors() || !strings.Contains(fmt.Sprint(diags), "cannot be created") {
		t.Fatalf("validate of a key log in a missing directory: %v", diags)
	}
	if diags := build(&Builder{}, route("keys.log")); diags.HasErrors() {
		t.Fatalf("build: %v", diags)
	}
	if st, err := os.Stat(filepath.Join(dir, "keys.log")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the build's keys.log: %v, %v", st, err)
	}
}
