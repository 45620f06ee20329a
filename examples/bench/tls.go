//go:build linux

package main

// The TLS part of the run (-tls): TLS terminated by the tunnel, HAProxy
// (bind ... ssl crt) and nginx (stream, listen ... ssl) in front of the
// same plaintext backend, and TLS passed through by the tunnel spliced and
// routed by SNI in front of a TLS backend. The client is this program:
// crypto/tls with its defaults (TLS 1.3, X25519MLKEM768 key exchange), an
// ECDSA P-256 certificate everywhere.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// tlsSetup is the certificate and the in-process backends of the TLS part.
type tlsSetup struct {
	certFile, keyFile, bundle string // PEM files; bundle = cert + key (HAProxy)
	cert                      tls.Certificate
	pool                      *x509.CertPool
	plain, secure             *tlsBackend
}

// tlsBackend is an in-process server: a connection whose first byte is 'B'
// is a bulk upload (read and dropped), 'E' an echo of 32-byte messages.
type tlsBackend struct {
	ln   net.Listener
	wg   sync.WaitGroup
	addr string
}

func newTLSSetup(dir string) (*tlsSetup, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.example"},
		DNSNames: []string{"bench.example"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	s := &tlsSetup{certFile: filepath.Join(dir, "bench.pem"), keyFile: filepath.Join(dir, "bench-key.pem"), bundle: filepath.Join(dir, "bench-bundle.pem")}
	for path, data := range map[string][]byte{s.certFile: certPEM, s.keyFile: keyPEM, s.bundle: append(slices.Clone(certPEM), keyPEM...)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	if s.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	s.pool = x509.NewCertPool()
	s.pool.AppendCertsFromPEM(certPEM)
	if s.plain, err = startTLSBackend(nil); err != nil {
		return nil, err
	}
	if s.secure, err = startTLSBackend(&tls.Config{Certificates: []tls.Certificate{s.cert}}); err != nil {
		s.plain.close()
		return nil, err
	}
	return s, nil
}

func (s *tlsSetup) close() {
	s.plain.close()
	s.secure.close()
}

func startTLSBackend(cfg *tls.Config) (*tlsBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	b := &tlsBackend{ln: ln, addr: ln.Addr().String()}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				serveBench(c)
			}()
		}
	}()
	return b, nil
}

func serveBench(c net.Conn) {
	var kind [1]byte
	if _, err := io.ReadFull(c, kind[:]); err != nil {
		return
	}
	switch kind[0] {
	case 'B':
		io.Copy(io.Discard, c)
	case 'E':
		buf := make([]byte, 32)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}

func (b *tlsBackend) close() {
	b.ln.Close()
	b.wg.Wait()
}

// tlsTarget is a forwarder of the TLS part.
type tlsTarget struct {
	name, desc string
	// terminate: the client's TLS ends at the forwarder (backend plain);
	// otherwise it goes through to the TLS backend.
	terminate bool
	launch    func(b *bench, s *tlsSetup, name string, port int, backend string) (*proc, error)
	reason    string
	addr      string
	proc      *proc
}

func (b *bench) tlsTargets() []*tlsTarget {
	tunnelCfg := func(route string) func(b *bench, s *tlsSetup, name string, port int, backend string) (*proc, error) {
		return func(b *bench, s *tlsSetup, name string, port int, backend string) (*proc, error) {
			cfg := fmt.Sprintf("route %q {\n  listen = \"127.0.0.1:%d\"\n  target = %q\n%s}\n", name, port, backend, route)
			path := filepath.Join(b.tmp, name+".hcl")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				return nil, err
			}
			argv := []string{b.tunnelBin, "--config", path, "--log-level", "warn", "--grace", "1s"}
			return b.procs.start(name, argv, startOpts{pidns: true})
		}
	}
	ts := []*tlsTarget{
		{name: "direct-tls", desc: "no forwarder: the client's TLS ends at the backend (Go crypto/tls)"},
		{name: "tunnel-tls", desc: "the tunnel terminating TLS (tls { cert, key }), plaintext to the backend", terminate: true,
			launch: func(b *bench, s *tlsSetup, name string, port int, backend string) (*proc, error) {
				return tunnelCfg(fmt.Sprintf("  tls {\n    cert = %q\n    key = %q\n  }\n", s.certFile, s.keyFile))(b, s, name, port, backend)
			}},
		{name: "haproxy-tls", desc: "haproxy mode tcp, bind ... ssl crt (OpenSSL), plaintext to the backend", terminate: true, launch: launchHaproxyTLS},
		{name: "nginx-tls", desc: "nginx stream, listen ... ssl (OpenSSL), plaintext to the backend", terminate: true, launch: launchNginxTLS},
		{name: "tunnel-splice", desc: "the tunnel passing TLS through, no plugin (kernel splice)", launch: tunnelCfg("")},
		{name: "tunnel-sni", desc: "the tunnel passing TLS through, the route chosen by SNI (server_names), then spliced",
			launch: tunnelCfg("  server_names = [\"bench.example\"]\n")},
	}
	for _, t := range ts {
		switch t.name {
		case "haproxy-tls":
			if b.bin["haproxy"] == "" {
				t.reason = "haproxy is not installed"
			}
		case "nginx-tls":
			if b.bin["nginx"] == "" {
				t.reason = "nginx is not installed"
			} else if _, err := nginxStreamModule(b.bin["nginx"]); err != nil {
				t.reason = err.Error()
			}
		}
	}
	return ts
}

func launchHaproxyTLS(b *bench, s *tlsSetup, name string, port int, backend string) (*proc, error) {
	return startHaproxy(b, name, port, backend, "\ttune.ssl.default-dh-param 2048\n", " ssl crt "+s.bundle)
}

func launchNginxTLS(b *bench, s *tlsSetup, name string, port int, backend string) (*proc, error) {
	return startNginx(b, name, port, backend, " ssl", fmt.Sprintf("\t\tssl_certificate %s;\n\t\tssl_certificate_key %s;\n", s.certFile, s.keyFile))
}

// tlsDial connects to addr and completes a full TLS handshake (no session
// resumption).
func (s *tlsSetup) dial(ctx context.Context, addr string) (*tls.Conn, error) {
	d := tls.Dialer{Config: &tls.Config{RootCAs: s.pool, ServerName: "bench.example", ClientSessionCache: nil}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// tlsBulk uploads through addr over `streams` TLS connections for dur and
// returns MB/s and the GiB moved.
func (s *tlsSetup) bulk(ctx context.Context, addr string, streams int, dur time.Duration) (float64, float64, error) {
	var total atomic.Int64
	errc := make(chan error, streams)
	start := time.Now()
	stop := start.Add(dur)
	for range streams {
		go func() {
			c, err := s.dial(ctx, addr)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			buf[0] = 'B'
			for time.Now().Before(stop) {
				n, err := c.Write(buf)
				total.Add(int64(n))
				if err != nil {
					errc <- err
					return
				}
				buf[0] = 0
			}
			errc <- nil
		}()
	}
	var first error
	for range streams {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	el := time.Since(start).Seconds()
	return float64(total.Load()) / el / 1e6, float64(total.Load()) / (1 << 30), first
}

// handshakes opens TLS connections through addr, conc at a time, for dur:
// full handshake, one 32-byte echo, close. It returns handshakes per second
// and their count.
func (s *tlsSetup) handshakes(ctx context.Context, addr string, conc int, dur time.Duration) (float64, float64, error) {
	var n atomic.Int64
	errc := make(chan error, conc)
	start := time.Now()
	stop := start.Add(dur)
	for range conc {
		go func() {
			msg := make([]byte, 33)
			msg[0] = 'E'
			for time.Now().Before(stop) {
				c, err := s.dial(ctx, addr)
				if err != nil {
					errc <- err
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, msg[1:])
				}
				c.Close()
				if err != nil {
					errc <- err
					return
				}
				n.Add(1)
			}
			errc <- nil
		}()
	}
	var first error
	for range conc {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return float64(n.Load()) / time.Since(start).Seconds(), float64(n.Load()), first
}

// idleTLS holds n idle TLS connections (each after one echo) through t and
// returns the forwarder's RSS growth per connection in KiB.
func (s *tlsSetup) idle(ctx context.Context, t *tlsTarget, n int) (float64, error) {
	if t.proc == nil {
		return 0, errors.New("no forwarder process")
	}
	base := treeMemKB(t.proc.pid, "VmRSS")
	conns := make([]*tls.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	msg := make([]byte, 33)
	msg[0] = 'E'
	for range n {
		c, err := s.dial(ctx, t.addr)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, msg[1:]); err != nil {
			return 0, err
		}
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(treeMemKB(t.proc.pid, "VmRSS")-base) / float64(n), nil
}

// runTLS measures the TLS targets: bulk (1 stream), handshakes (16 at a
// time), idle memory. It prints its own table and returns the figures
// keyed like the main results (target -> key -> value) and the errors.
func (b *bench) runTLS(ctx context.Context, rounds int, idleConns int, stdout io.Writer) (results, []string) {
	res := results{}
	var errs []string
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		errs = append(errs, msg)
		fmt.Fprintf(stdout, "  ERROR %s\n", msg)
	}
	s, err := newTLSSetup(b.tmp)
	if err != nil {
		fail("tls setup: %v", err)
		return res, errs
	}
	defer s.close()
	ts := b.tlsTargets()
	var run []*tlsTarget
	for _, t := range ts {
		backend := s.secure.addr
		if t.terminate {
			backend = s.plain.addr
		}
		if t.reason != "" {
			fmt.Fprintf(stdout, "target %-16s NOT AVAILABLE: %s\n", t.name, t.reason)
			continue
		}
		if t.launch == nil {
			t.addr = backend
		} else {
			port, err := b.ports.next()
			if err == nil {
				t.proc, err = t.launch(b, s, t.name, port, backend)
			}
			if err == nil {
				t.addr = fmt.Sprintf("127.0.0.1:%d", port)
				err = waitListening(ctx, t.proc, port, 60*time.Second)
			}
			if err != nil {
				fail("target %s: %v", t.name, err)
				if t.proc != nil {
					b.procs.remove(t.proc, time.Second)
				}
				continue
			}
		}
		fmt.Fprintf(stdout, "target %-16s %s\n", t.name, t.desc)
		run = append(run, t)
	}
	defer func() {
		for _, t := range run {
			if t.proc != nil {
				b.procs.remove(t.proc, 3*time.Second)
			}
		}
	}()
	bulkTime, hsTime := b.bulkTime, b.connTime
	for round := range rounds {
		fmt.Fprintf(stdout, "tls round %d/%d\n", round+1, rounds)
		k := round % len(run)
		order := append(slices.Clone(run[k:]), run[:k]...)
		for _, test := range []string{"tlsbulk", "tlshs"} {
			for _, t := range order {
				if ctx.Err() != nil {
					return res, errs
				}
				var cpu0 float64
				if t.proc != nil {
					cpu0, _ = treeCPUSeconds(t.proc.pid)
				}
				var v, work float64
				var err error
				if test == "tlsbulk" {
					v, work, err = s.bulk(ctx, t.addr, 1, bulkTime)
				} else {
					v, work, err = s.handshakes(ctx, t.addr, 16, hsTime)
				}
				if err != nil {
					fail("tls round %d, %s, %s: %v", round+1, t.name, test, err)
					continue
				}
				key := map[string]string{"tlsbulk": "tlsbulk_mb_s", "tlshs": "tlshs_per_s"}[test]
				res.add(t.name, key, v)
				line := fmt.Sprintf("%s=%.0f", key, v)
				if t.proc != nil && work > 0 {
					cpu1, _ := treeCPUSeconds(t.proc.pid)
					ck, scale := "tlsbulk_cpu_s_per_gib", 1.0
					if test == "tlshs" {
						ck, scale = "tlshs_cpu_us_per_hs", 1e6
					}
					res.add(t.name, ck, (cpu1-cpu0)/work*scale)
					line += fmt.Sprintf(" %s=%.2f", ck, (cpu1-cpu0)/work*scale)
				}
				fmt.Fprintf(stdout, "  %-16s %s\n", t.name, line)
			}
		}
	}
	if idleConns > 0 {
		for _, t := range run {
			if !t.terminate || t.proc == nil {
				continue
			}
			kib, err := s.idle(ctx, t, idleConns)
			if err != nil {
				fail("tls idle through %s: %v", t.name, err)
				continue
			}
			res.add(t.name, "tlsidle_kib_per_conn", kib)
			fmt.Fprintf(stdout, "  %-16s %d idle TLS conns: %.1f KiB per conn\n", t.name, idleConns, kib)
		}
	}
	res.summarize()
	fmt.Fprintf(stdout, "\nTLS: medians of %d round(s); bulk = 1 stream uploading %s; handshakes = 16 at a time, full TLS 1.3 handshake + one 32-byte echo\n", rounds, bulkTime)
	fmt.Fprintf(stdout, "  %-16s %12s %14s %12s %14s %12s\n", "target", "bulk MB/s", "CPU s/GiB", "hs/s", "CPU µs/hs", "idle KiB")
	for _, t := range run {
		f := func(key string) string {
			v := res.median(t.name, key)
			if math.IsNaN(v) {
				return "-"
			}
			return num(v)
		}
		fmt.Fprintf(stdout, "  %-16s %12s %14s %12s %14s %12s\n", t.name, f("tlsbulk_mb_s"), f("tlsbulk_cpu_s_per_gib"), f("tlshs_per_s"), f("tlshs_cpu_us_per_hs"), f("tlsidle_kib_per_conn"))
	}
	best := func(key string) (float64, string) {
		var v float64
		var who string
		for _, name := range []string{"haproxy-tls", "nginx-tls"} {
			if m := res.median(name, key); m > v {
				v, who = m, name
			}
		}
		return v, who
	}
	for _, key := range []string{"tlsbulk_mb_s", "tlshs_per_s"} {
		if v, who := best(key); v > 0 {
			fmt.Fprintf(stdout, "  goal: tunnel-tls %s at least 0.8× of the faster of haproxy-tls and nginx-tls: %.2f× of %s\n", key, res.median("tunnel-tls", key)/v, who)
		}
	}
	if sp := res.median("tunnel-splice", "tlsbulk_mb_s"); sp > 0 {
		fmt.Fprintf(stdout, "  goal: tunnel-sni bulk at least 0.95× of tunnel-splice: %.2f×\n", res.median("tunnel-sni", "tlsbulk_mb_s")/sp)
	}
	return res, errs
}
