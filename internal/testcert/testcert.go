// Package testcert makes certificates for tests at test time: a CA, server
// certificates for loopback (DNS names, 127.0.0.1, ::1) and client
// certificates (CN, DNS and URI SANs), written as PEM files into
// t.TempDir(). Nothing it makes is meant to outlive the test, and no private
// key is ever committed: every key is generated when the test runs.
//
// Keys are ECDSA P-256, which is quick to generate on a busy machine.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority made for one test.
type CA struct {
	// Cert is the CA's certificate; Key signs what it issues.
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is Cert in PEM; CertFile holds it (ca.pem in a temporary
	// directory of the test).
	CertPEM  []byte
	CertFile string

	dir string
}

// Pair is a certificate with its key, in memory and on disk.
type Pair struct {
	// Cert is the parsed leaf certificate.
	Cert *x509.Certificate
	// TLS is the pair ready for tls.Config.Certificates.
	TLS tls.Certificate
	// CertPEM and KeyPEM are the PEM encodings; CertFile and KeyFile the
	// files holding them.
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
}

// Options describe a certificate to issue. Zero values mean: valid from an
// hour ago for a day, no names.
type Options struct {
	// CommonName is the subject's CN.
	CommonName string
	// DNSNames, IPs and URIs are the subject alternative names.
	DNSNames []string
	IPs      []net.IP
	URIs     []string
	// NotBefore and NotAfter bound the validity (set both in the past for
	// an expired certificate).
	NotBefore, NotAfter time.Time
	// Client marks the certificate for client authentication; otherwise it
	// is for server authentication.
	Client bool
}

// nextSerial is a random 127-bit serial number (safe for parallel tests).
func nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("testcert: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

// newKey makes a P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcert: generating a key: %v", err)
	}
	return k
}

// NewCA makes a CA whose subject is CN=name and writes its certificate to
// a temporary directory of t.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tunnel tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testcert: creating CA %q: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcert: parsing CA %q: %v", name, err)
	}
	ca := &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), dir: t.TempDir()}
	ca.CertFile = filepath.Join(ca.dir, "ca.pem")
	writeFile(t, ca.CertFile, ca.CertPEM)
	return ca
}

// Pool is a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate described by o and writes it and its key
// (mode 0600) to a fresh temporary directory of t, as cert.pem and key.pem.
func (ca *CA) Issue(t testing.TB, o Options) *Pair {
	t.Helper()
	key := newKey(t)
	notBefore, notAfter := o.NotBefore, o.NotAfter
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	usage := x509.ExtKeyUsageServerAuth
	if o.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: []string{"tunnel tests"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	for _, u := range o.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("testcert: URI SAN %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("testcert: issuing %q: %v", o.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcert: parsing %q: %v", o.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testcert: encoding the key of %q: %v", o.CommonName, err)
	}
	p := &Pair{
		Cert:    cert,
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  pemBlock("PRIVATE KEY", keyDER),
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
	}
	dir := t.TempDir()
	p.CertFile, p.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	p.WriteFiles(t, p.CertFile, p.KeyFile)
	return p
}

// Server issues a server certificate for names: each is an IP address
// (an IP SAN) or a DNS name. Without names it covers localhost, 127.0.0.1
// and ::1. The CN is the first name.
func (ca *CA) Server(t testing.TB, names ...string) *Pair {
	t.Helper()
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
	}
	o := Options{CommonName: names[0]}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			o.IPs = append(o.IPs, ip)
		} else {
			o.DNSNames = append(o.DNSNames, n)
		}
	}
	return ca.Issue(t, o)
}

// Client issues a client certificate with common name cn and the SANs in
// sans: a name containing "://" is a URI SAN (e.g. spiffe://x/y), any
// other a DNS SAN.
func (ca *CA) Client(t testing.TB, cn string, sans ...string) *Pair {
	t.Helper()
	o := Options{CommonName: cn, Client: true}
	for _, s := range sans {
		if strings.Contains(s, "://") {
			o.URIs = append(o.URIs, s)
		} else {
			o.DNSNames = append(o.DNSNames, s)
		}
	}
	return ca.Issue(t, o)
}

// WriteFiles writes the certificate and key PEM to certPath and keyPath
// (the key with mode 0600), each through a temporary file renamed into
// place, so a reader never sees half a file.
func (p *Pair) WriteFiles(t testing.TB, certPath, keyPath string) {
	t.Helper()
	writeFile(t, certPath, p.CertPEM)
	writeFile(t, keyPath, p.KeyPEM)
}

// SPKISHA256 is the hex SHA-256 of the certificate's SubjectPublicKeyInfo,
// the form of a spki_sha256 allow rule.
func (p *Pair) SPKISHA256() string {
	sum := sha256.Sum256(p.Cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("testcert: %v", err)
	}
}
