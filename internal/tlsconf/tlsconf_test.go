package tlsconf

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testcert"
)

// handshake runs a client against a server config over loopback TCP and
// returns both sides' errors (the server's names the refusal).
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		tc := tls.Server(c, srv)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = io.WriteString(tc, "ok")
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	tc := tls.Client(c, cli)
	clientErr = tc.Handshake()
	if clientErr == nil {
		// In TLS 1.3 the client finishes before the server checks its
		// certificate: the refusal arrives on the first read.
		b := make([]byte, 2)
		if _, err := io.ReadFull(tc, b); err != nil {
			clientErr = err
		} else if string(b) != "ok" {
			clientErr = errors.New("read " + string(b))
		}
	}
	return <-done, clientErr
}

func TestServerPlain(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	srv := ca.Server(t)
	l, err := LoadServer(ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ALPN: []string{"h2"}, MinVersion: "1.3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 0 || l.Leaf.Subject.CommonName != "localhost" || l.Config.MinVersion != tls.VersionTLS13 {
		t.Fatalf("loaded: %+v", l)
	}
	serr, cerr := handshake(t, l.Config, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
	// A 1.2-only client is refused by min_version 1.3.
	serr, _ = handshake(t, l.Config, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	if serr == nil || !strings.Contains(serr.Error(), "unsupported versions") {
		t.Fatalf("TLS 1.2 client against min_version 1.3: %v", serr)
	}
}

// TestSum: the same files give the same sum; a new certificate, or other
// settings, another.
func TestSum(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	srv := ca.Server(t)
	s := ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile}
	a, err := LoadServer(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadServer(s)
	if err != nil {
		t.Fatal(err)
	}
	if a.Sum != b.Sum {
		t.Fatal("same files, different sums")
	}
	s.ALPN = []string{"h2"}
	if c, _ := LoadServer(s); c.Sum == a.Sum {
		t.Fatal("ALPN did not change the sum")
	}
	s.ALPN = nil
	ca.Server(t).WriteFiles(t, srv.CertFile, srv.KeyFile)
	if c, _ := LoadServer(s); c.Sum == a.Sum {
		t.Fatal("a new certificate did not change the sum")
	}
}

// TestFileErrors: each broken file gives an error naming it and the fault.
func TestFileErrors(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	srv := ca.Server(t)
	other := ca.Server(t)
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("hello\n"), 0o600)
	// A chain file with the CA first: the key matches the second block.
	caFirst := filepath.Join(dir, "ca-first.pem")
	caPEM, _ := os.ReadFile(ca.CertFile)
	leafPEM, _ := os.ReadFile(srv.CertFile)
	os.WriteFile(caFirst, append(caPEM, leafPEM...), 0o600)
	for _, tc := range []struct {
		name string
		s    ServerSettings
		want []string
	}{
		{"missing cert", ServerSettings{Cert: filepath.Join(dir, "nope.pem"), Key: srv.KeyFile}, []string{"cert", "nope.pem", "does not exist"}},
		{"missing key", ServerSettings{Cert: srv.CertFile, Key: filepath.Join(dir, "nokey.pem")}, []string{"key", "nokey.pem", "does not exist"}},
		{"mismatch", ServerSettings{Cert: srv.CertFile, Key: other.KeyFile}, []string{"key " + other.KeyFile + " does not match the certificate in " + srv.CertFile}},
		{"chain order", ServerSettings{Cert: caFirst, Key: srv.KeyFile}, []string{"does not match the certificate in " + caFirst + " (" + caFirst + " holds 2 certificates: the key's own, the leaf, must come first, then its chain)"}},
		{"swapped", ServerSettings{Cert: srv.KeyFile, Key: srv.CertFile}, []string{"cert " + srv.KeyFile + " has no CERTIFICATE block, only PRIVATE KEY", "swapped"}},
		{"no pem", ServerSettings{Cert: junk, Key: srv.KeyFile}, []string{"cert " + junk + " has no CERTIFICATE block, no PEM block at all"}},
		{"bad ca", ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: srv.KeyFile, Allow: Allow{All: true}}, []string{"client_ca " + srv.KeyFile + " has no CERTIFICATE block"}},
		{"no cert", ServerSettings{Key: srv.KeyFile}, []string{"both cert and key"}},
		{"version", ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, MinVersion: "1.1"}, []string{`min_version "1.1"`}},
		{"allow without ca", ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, Allow: Allow{CN: []string{"a"}}}, []string{"allow rules need client_ca"}},
		{"ca without allow", ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CertFile}, []string{"refuse every client", "all = true"}},
		{"bad pin", ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CertFile, Allow: Allow{SPKISHA256: []string{"abcd"}}}, []string{`spki_sha256 "abcd"`}},
		{"bad dns", ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CertFile, Allow: Allow{DNS: []string{"a.*.b"}}}, []string{`dns "a.*.b"`}},
	} {
		_, err := LoadServer(tc.s)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}
	// A key file of two keys, the certificate's second: the error says
	// only the first is used.
	otherKey, _ := os.ReadFile(other.KeyFile)
	srvKey, _ := os.ReadFile(srv.KeyFile)
	twoKeys := filepath.Join(dir, "two-keys.pem")
	os.WriteFile(twoKeys, append(append([]byte(nil), otherKey...), srvKey...), 0o600)
	if _, err := LoadServer(ServerSettings{Cert: srv.CertFile, Key: twoKeys}); err == nil || !strings.Contains(err.Error(), "("+twoKeys+" holds 2 private keys: only the first is used)") {
		t.Errorf("two keys: %v", err)
	}
	// An encrypted key (PKCS #8, or legacy PEM with Proc-Type) is the
	// key's fault, said so, not a cert that "failed to parse private key".
	pkcs8Enc := filepath.Join(dir, "enc8.pem")
	os.WriteFile(pkcs8Enc, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("sealed")}), 0o600)
	legacyEnc := filepath.Join(dir, "enc-legacy.pem")
	os.WriteFile(legacyEnc, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte("sealed")}), 0o600)
	for _, k := range []string{pkcs8Enc, legacyEnc} {
		_, err := LoadServer(ServerSettings{Cert: srv.CertFile, Key: k})
		if err == nil || Setting(err) != "key" || !strings.Contains(err.Error(), "key "+k+" is encrypted") {
			t.Errorf("encrypted key %s: %v (setting %q)", k, err, Setting(err))
		}
	}
	// A chain certificate that does not parse is an error (crypto/tls
	// parses the leaf alone, and clients would refuse the chain), and one
	// that is not the issuer of the certificate before it is a warning.
	badChain := filepath.Join(dir, "bad-chain.pem")
	os.WriteFile(badChain, append(append([]byte(nil), leafPEM...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})...), 0o600)
	if _, err := LoadServer(ServerSettings{Cert: badChain, Key: srv.KeyFile}); err == nil || Setting(err) != "cert" || !strings.Contains(err.Error(), "cert "+badChain+": certificate 2 of the chain does not parse") {
		t.Errorf("bad chain: %v", err)
	}
	otherCA := testcert.NewCA(t, "Other CA")
	otherPEM, _ := os.ReadFile(otherCA.CertFile)
	wrongChain := filepath.Join(dir, "wrong-chain.pem")
	os.WriteFile(wrongChain, append(append([]byte(nil), leafPEM...), otherPEM...), 0o600)
	l, err := LoadServer(ServerSettings{Cert: wrongChain, Key: srv.KeyFile})
	if err != nil || !strings.Contains(l.ChainWarning, `certificate 2 ("CN=Other CA,O=tunnel tests") is not the issuer of certificate 1`) || len(l.Warnings) != 1 {
		t.Errorf("wrong chain: %v, %+v", err, l)
	}
	goodChain := filepath.Join(dir, "good-chain.pem")
	os.WriteFile(goodChain, append(append([]byte(nil), leafPEM...), caPEM...), 0o600)
	if l, err := LoadServer(ServerSettings{Cert: goodChain, Key: srv.KeyFile}); err != nil || len(l.Warnings) != 0 {
		t.Errorf("good chain: %v, %+v", err, l)
	}
	if _, err := LoadClient(ClientSettings{Cert: srv.CertFile}); err == nil || !strings.Contains(err.Error(), "without its key") {
		t.Errorf("client cert without key: %v", err)
	}
	if _, err := LoadClient(ClientSettings{CA: junk}); err == nil || !strings.Contains(err.Error(), "ca "+junk+" has no CERTIFICATE block") {
		t.Errorf("client junk ca: %v", err)
	}
}

// TestExpired: an expired certificate loads, with a warning naming it.
func TestExpired(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	old := ca.Issue(t, testcert.Options{CommonName: "old", DNSNames: []string{"old.example"}, NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	l, err := LoadServer(ServerSettings{Cert: old.CertFile, Key: old.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "cert "+old.CertFile+" expired on") {
		t.Fatalf("warnings %q", l.Warnings)
	}
}

// TestMutualTLS: allow rules by CN, DNS (wildcard), URI and SPKI pin let
// the matching client in; a client of another CA, one without a
// certificate and one no rule matches are refused, and the server's error
// names the rules and the subject.
func TestMutualTLS(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	otherCA := testcert.NewCA(t, "other CA")
	srv := ca.Server(t)
	alice := ca.Client(t, "alice", "alice.team.example")
	bob := ca.Client(t, "bob", "spiffe://example.org/bob")
	carol := ca.Client(t, "carol", "carol.elsewhere.example")
	mallory := otherCA.Client(t, "alice", "alice.team.example")
	clientCfg := func(p *testcert.Pair) *tls.Config {
		c := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if p != nil {
			// Always presented, as openssl s_client does: crypto/tls's
			// own choice would skip a certificate of a CA the server
			// does not list.
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &p.TLS, nil }
		}
		return c
	}
	base := ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CertFile}
	for _, tc := range []struct {
		name   string
		allow  Allow
		client *testcert.Pair
		ok     bool
		want   string // in the server's error
	}{
		{"cn", Allow{CN: []string{"alice"}}, alice, true, ""},
		{"dns wildcard", Allow{DNS: []string{"*.team.example"}}, alice, true, ""},
		{"uri", Allow{URI: []string{"spiffe://example.org/bob"}}, bob, true, ""},
		{"spki", Allow{SPKISHA256: []string{strings.ToUpper(bob.SPKISHA256())}}, bob, true, ""},
		{"all", Allow{All: true}, carol, true, ""},
		{"no rule matches", Allow{CN: []string{"alice"}, DNS: []string{"*.team.example"}, URI: []string{"spiffe://example.org/bob"}}, carol, false,
			`tls: client certificate "CN=carol,O=tunnel tests" dns=[carol.elsewhere.example] matches no allow rule (allowed: cn ["alice"], dns ["*.team.example"], uri ["spiffe://example.org/bob"])`},
		{"wrong CA", Allow{CN: []string{"alice"}}, mallory, false, "certificate signed by unknown authority"},
		{"no certificate", Allow{All: true}, nil, false, "client didn't provide a certificate"},
	} {
		s := base
		s.Allow = tc.allow
		cfg, err := Server(s)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		serr, cerr := handshake(t, cfg, clientCfg(tc.client))
		if tc.ok {
			if serr != nil || cerr != nil {
				t.Errorf("%s: refused: server %v, client %v", tc.name, serr, cerr)
			}
			continue
		}
		if serr == nil || cerr == nil {
			t.Errorf("%s: accepted (server %v, client %v)", tc.name, serr, cerr)
			continue
		}
		if !strings.Contains(serr.Error(), tc.want) {
			t.Errorf("%s: server error %q does not say %q", tc.name, serr, tc.want)
		}
		if tc.name == "no rule matches" && !errors.Is(serr, ErrNotAllowed) {
			t.Errorf("%s: %v is not ErrNotAllowed", tc.name, serr)
		}
	}
	// require_client_cert = false: no certificate is fine, a bad one is not.
	s := base
	s.OptionalClientCert = true
	s.Allow = Allow{CN: []string{"alice"}}
	cfg, err := Server(s)
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr := handshake(t, cfg, clientCfg(nil)); serr != nil || cerr != nil {
		t.Errorf("optional, none given: server %v, client %v", serr, cerr)
	}
	if serr, _ := handshake(t, cfg, clientCfg(carol)); !errors.Is(serr, ErrNotAllowed) {
		t.Errorf("optional, carol: %v", serr)
	}
}

// TestClient: upstream TLS verifies against the given CA and name,
// presents a client certificate, and insecure_skip_verify warns.
func TestClient(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	srv := ca.Server(t, "backend.example")
	cli := ca.Client(t, "tunnel")
	serverCfg, err := Server(ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CertFile, Allow: Allow{CN: []string{"tunnel"}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := LoadClient(ClientSettings{CA: ca.CertFile, ServerName: "backend.example", Cert: cli.CertFile, Key: cli.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr := handshake(t, serverCfg, l.Config); serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
	wrongName, _ := Client(ClientSettings{CA: ca.CertFile, ServerName: "other.example", Cert: cli.CertFile, Key: cli.KeyFile})
	if _, cerr := handshake(t, serverCfg, wrongName); cerr == nil || !strings.Contains(cerr.Error(), "other.example") {
		t.Fatalf("wrong name: %v", cerr)
	}
	insecure, err := LoadClient(ClientSettings{InsecureSkipVerify: true})
	if err != nil || len(insecure.Warnings) != 1 || !strings.Contains(insecure.Warnings[0], "insecure_skip_verify") {
		t.Fatalf("insecure: %v %q", err, insecure.Warnings)
	}
}

// TestKeyLog: lines of two configs sharing one KeyLog land in one file of
// mode 0600, in the NSS format; a world-readable file is refused; writes
// after Close are dropped without failing the handshake.
func TestKeyLog(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	srv := ca.Server(t)
	path := filepath.Join(t.TempDir(), "keys.log")
	kl, err := OpenKeyLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // two "reloads" sharing the file
		cfg, err := Server(ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, KeyLog: kl})
		if err != nil {
			t.Fatal(err)
		}
		if serr, cerr := handshake(t, cfg, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}); serr != nil || cerr != nil {
			t.Fatalf("server %v, client %v", serr, cerr)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "CLIENT_HANDSHAKE_TRAFFIC_SECRET "); n != 2 {
		t.Fatalf("%d handshake secrets in:\n%s", n, b)
	}
	if err := kl.Close(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := Server(ServerSettings{Cert: srv.CertFile, Key: srv.KeyFile, KeyLog: kl})
	if serr, cerr := handshake(t, cfg, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}); serr != nil || cerr != nil {
		t.Fatalf("after Close: server %v, client %v", serr, cerr)
	}
	if kl.Err() == nil {
		t.Fatal("a write after Close was not reported by Err")
	}
	open := filepath.Join(t.TempDir(), "open.log")
	os.WriteFile(open, nil, 0o644)
	if _, err := OpenKeyLog(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable: %v", err)
	}
}

func TestParseSPKI(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	for _, ok := range []string{hex64, strings.ToUpper(hex64), strings.TrimSuffix(strings.Repeat("AB:", 32), ":"), base64.StdEncoding.EncodeToString(make([]byte, 32))} {
		if _, err := ParseSPKI(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", hex64 + "ab", "zz" + hex64[2:]} {
		if _, err := ParseSPKI(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestSetting: errors say which setting they are about.
func TestSetting(t *testing.T) {
	ca := testcert.NewCA(t, "CA")
	srv := ca.Server(t)
	other := ca.Server(t)
	for want, s := range map[string]ServerSettings{
		"cert":        {Cert: srv.KeyFile, Key: srv.KeyFile},
		"key":         {Cert: srv.CertFile, Key: other.KeyFile},
		"client_ca":   {Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: srv.KeyFile, Allow: Allow{All: true}},
		"min_version": {Cert: srv.CertFile, Key: srv.KeyFile, MinVersion: "1.0"},
		"allow":       {Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: ca.CertFile},
	} {
		_, err := LoadServer(s)
		if got := Setting(err); got != want {
			t.Errorf("%v: Setting = %q, want %q", err, got, want)
		}
	}
	if _, err := LoadClient(ClientSettings{CA: srv.KeyFile}); Setting(err) != "ca" {
		t.Errorf("client ca: %v", err)
	}
}
