package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestHandshake runs a mutual TLS handshake over loopback with a server and
// a client certificate read back from the PEM files the kit wrote.
func TestHandshake(t *testing.T) {
	ca := NewCA(t, "test CA")
	srv := ca.Server(t)
	cli := ca.Client(t, "alice", "alice.example", "spiffe://example/alice")
	if got := cli.Cert.URIs[0].String(); got != "spiffe://example/alice" {
		t.Fatalf("URI SAN = %q", got)
	}
	if got := cli.Cert.DNSNames; len(got) != 1 || got[0] != "alice.example" {
		t.Fatalf("DNS SANs = %q", got)
	}
	srvPair, err := tls.LoadX509KeyPair(srv.CertFile, srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cliPair, err := tls.LoadX509KeyPair(cli.CertFile, cli.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	if st, err := os.Stat(srv.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvPair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
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
		_, err = io.WriteString(c, "hi")
		done <- err
	}()
	d := &net.Dialer{Timeout: 30 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cliPair}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Verified for ::1 too.
	if _, err := srv.Cert.Verify(x509.VerifyOptions{DNSName: "::1", Roots: pool}); err != nil {
		t.Fatalf("::1: %v", err)
	}
}

// TestExpired issues a certificate that expired an hour ago.
func TestExpired(t *testing.T) {
	ca := NewCA(t, "test CA")
	p := ca.Issue(t, Options{CommonName: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if _, err := p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err == nil {
		t.Fatal("an expired certificate verified")
	}
	if len(p.SPKISHA256()) != 64 {
		t.Fatalf("SPKISHA256 = %q", p.SPKISHA256())
	}
}
