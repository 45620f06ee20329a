package host_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/internal/proxyproto"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testcert"
)

// headerServer accepts one connection and reports the PROXY header it
// starts with, its bytes, and what follows until the end.
func headerServer(t *testing.T) (addr string, got <-chan headerResult) {
	ch := make(chan headerResult, 1)
	srv := tn.Serve(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		var raw bytes.Buffer
		h, n, err := proxyproto.Parse(io.TeeReader(c, &raw))
		if err != nil {
			ch <- headerResult{err: err}
			return
		}
		rest, err := io.ReadAll(c)
		ch <- headerResult{h: h, n: n, raw: raw.Bytes(), rest: string(rest), err: err}
	})
	return srv.Addr(), ch
}

type headerResult struct {
	h    proxyproto.Header
	n    int
	raw  []byte
	rest string
	err  error
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// v2 without TLS: the client's and the listen address, byte for byte as
// the specification lays them out, then the client's bytes unchanged.
func TestProxyProtocolV2(t *testing.T) {
	t.Parallel()
	addr, got := headerServer(t)
	p, _ := tn.Proxy(t, tn.Route("pp2", addr, host.Link{Name: "proxy-protocol", Hook: host.ProxyProtocolV2(), Directions: host.OnlyClientToServer}))
	c := tn.Dial(t, p.Addr("pp2").String())
	c.Write([]byte("hello"))
	c.CloseWrite()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	cl, ls := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	want := []byte(proxyproto.Signature + "\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01")
	want = append(want, byte(cl.Port()>>8), byte(cl.Port()), byte(ls.Port()>>8), byte(ls.Port()))
	if !bytes.Equal(r.raw, want) || r.rest != "hello" {
		t.Fatalf("server read\n% x then %q\nwant\n% x then %q", r.raw, r.rest, want, "hello")
	}
}

// v2 on a route that terminates TLS: the server behind learns the SNI,
// the ALPN, the TLS version and that the client's certificate was
// verified.
func TestProxyProtocolV2TLS(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "pp2 CA")
	addr, got := headerServer(t)
	r := tn.Route("pp2tls", addr, host.Link{Name: "proxy-protocol", Hook: host.ProxyProtocolV2(), Directions: host.OnlyClientToServer})
	r.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t, "pp.example").TLS},
		NextProtos:   []string{"h2", "http/1.1"},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	p, logs := tn.Proxy(t, r)
	raw := tn.Dial(t, p.Addr("pp2tls").String())
	c := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "pp.example", NextProtos: []string{"h2"},
		Certificates: []tls.Certificate{ca.Client(t, "alice").TLS}})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("over tls"))
	c.CloseWrite()
	res := <-got
	if res.err != nil {
		t.Fatal(res.err)
	}
	h := res.h
	if h.Source != addrPort(raw.LocalAddr()) || h.Destination != addrPort(raw.RemoteAddr()) || res.rest != "over tls" {
		t.Fatalf("header %v -> %v then %q; want %v -> %v then %q", h.Source, h.Destination, res.rest, raw.LocalAddr(), raw.RemoteAddr(), "over tls")
	}
	wantSSL := proxyproto.SSL{Client: proxyproto.ClientSSL | proxyproto.ClientCertConn | proxyproto.ClientCertSess, Verify: 0, Version: "TLSv1.3"}
	if h.Authority != "pp.example" || h.ALPN != "h2" || h.SSL == nil || fmt.Sprint(*h.SSL) != fmt.Sprint(wantSSL) {
		t.Fatalf("TLVs: authority %q alpn %q ssl %+v; want pp.example, h2, %+v", h.Authority, h.ALPN, h.SSL, wantSSL)
	}
	// The close record says the same to the operator.
	c.Close()
	logs.Wait(t, "connection closed", `tls.sni=pp.example tls.alpn=h2 tls.version="TLS 1.3" tls.client_subject="CN=alice,O=tunnel tests" tls.client_verified=true`)
}

// A server behind the tunnel reads the client's real address from the v2
// header.
func ExampleProxyProtocolV2() {
	p := &host.Proxy{}
	err := p.Apply([]host.Route{{
		Name:   "behind-haproxy-style",
		Listen: "127.0.0.1:0",
		Target: "127.0.0.1:8080", // a server with PROXY v2 enabled (nginx: listen ... proxy_protocol)
		Chain: []host.Link{
			{Name: "proxy-protocol", Hook: host.ProxyProtocolV2(), Directions: host.OnlyClientToServer},
		},
	}})
	fmt.Println(err)
	p.Close()
	// Output: <nil>
}
