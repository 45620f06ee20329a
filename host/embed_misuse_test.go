package host_test

import (
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testcert"
)

// TestApplyRejectsNilChunkFunc: a nil ChunkFunc in a Link is refused by
// Apply like a nil Hook, instead of failing every connection with a
// recovered nil-pointer panic.
func TestApplyRejectsNilChunkFunc(t *testing.T) {
	t.Parallel()
	var p host.Proxy
	defer p.Close()
	err := p.Apply([]host.Route{{Name: "a", Listen: "127.0.0.1:0", Target: "127.0.0.1:1",
		Chain: []host.Link{{Name: "x", Hook: host.ChunkFunc(nil)}}}})
	if err == nil || !strings.Contains(err.Error(), "has no hook") {
		t.Fatalf("Apply with a nil ChunkFunc: %v", err)
	}
}

// TestDumpNilWriterDiscards: Dump(nil, …) was accepted, then reset every
// connection; a nil writer now discards the dump and the bytes pass.
func TestDumpNilWriterDiscards(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, tn.Route("d", srv.Addr(), host.Link{Name: "dump", Hook: host.Dump(nil, host.DumpHex)}))
	tn.EchoOnce(t, tn.Dial(t, p.Addr("d").String()), "ping")
}

// TestReapplyBoundAddress: a route applied on ":0" and applied again with
// the address Addr reported keeps its listener (and its open
// connections); it used to bind anew and fail with "address already in
// use".
func TestReapplyBoundAddress(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, tn.Route("s", srv.Addr()))
	addr := p.Addr("s").String()
	c := tn.Dial(t, addr)
	tn.EchoOnce(t, c, "before")
	r := tn.Route("s", srv.Addr())
	r.Listen = addr
	if err := p.Apply([]host.Route{r}); err != nil {
		t.Fatalf("reapplying %s: %v", addr, err)
	}
	if got := p.Addr("s").String(); got != addr {
		t.Fatalf("the route listens on %s, want %s", got, addr)
	}
	tn.EchoOnce(t, c, "after") // the open connection lives on
	tn.EchoOnce(t, tn.Dial(t, addr), "new")
	// And once more, now that the key is the address itself.
	if err := p.Apply([]host.Route{r}); err != nil {
		t.Fatalf("reapplying %s again: %v", addr, err)
	}
	tn.EchoOnce(t, tn.Dial(t, addr), "again")
}

// TestWireTapFailureEndsItsConnection: a Route.WireTap that panics, or
// returns a nil net.Conn, fails the connection it was given (Reason
// filter_error, logged with the cause), as a hook's panic does; the next
// connection is served. Either one used to crash the whole process from
// the connection's goroutine.
func TestWireTapFailureEndsItsConnection(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	var n atomic.Int32
	r := terminating(t, ca, srv.Addr())
	r.WireTap = func(_ *host.ConnInfo, c net.Conn) net.Conn {
		switch n.Add(1) {
		case 1:
			panic("the tap failed")
		case 2:
			return nil
		}
		return c
	}
	p, logs := tn.Proxy(t, r)
	addr := p.Addr("tls").String()
	for i := range 2 {
		// The tap fails before any byte is read: the reset may come
		// before the dial returns.
		raw, err := net.DialTimeout("tcp", addr, tn.Timeout)
		if err != nil {
			continue
		}
		c := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		c.SetDeadline(time.Now().Add(tn.Timeout))
		err = c.Handshake()
		raw.Close()
		if err == nil {
			t.Fatalf("connection %d: the handshake succeeded through a failed WireTap", i+1)
		}
	}
	logs.Wait(t, "connection closed", "conn=1", "reason=filter_error", "the tap failed")
	logs.Wait(t, "connection closed", "conn=2", "reason=filter_error", "WireTap returned a nil net.Conn")
	tn.EchoOnce(t, tlsClient(t, addr, ca, "localhost"), "tapped")
	st := p.Stats()[0]
	if got := st.Closed["filter_error"]; got != 2 {
		t.Errorf("Closed[filter_error] = %d, want 2", got)
	}
}

// TestTLSCallbackPanicEndsItsConnection: a panic in a route's tls.Config
// callback (here GetCertificate) fails that connection's handshake,
// logged with the panic, and the next connection is served. It used to
// crash the process from the connection's goroutine.
func TestTLSCallbackPanicEndsItsConnection(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	cert := ca.Server(t).TLS
	var n atomic.Int32
	r := tn.Route("tls", srv.Addr())
	r.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if n.Add(1) == 1 {
			panic("no certificate today")
		}
		return &cert, nil
	}}
	p, logs := tn.Proxy(t, r)
	addr := p.Addr("tls").String()
	c := tls.Client(tn.Dial(t, addr), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
	if err := c.Handshake(); err == nil {
		t.Fatal("the handshake succeeded though GetCertificate panicked")
	}
	logs.Wait(t, "connection closed", "conn=1", "reason=tls", "tls handshake with the client: panic: no certificate today")
	tn.EchoOnce(t, tlsClient(t, addr, ca, "localhost"), "served")

	// Toward the target: a panic in UpstreamTLS's VerifyConnection fails
	// the dial.
	up := tn.Route("up", tlsEcho(t, ca.Server(t)))
	up.UpstreamTLS = &tls.Config{RootCAs: ca.Pool(), VerifyConnection: func(tls.ConnectionState) error {
		panic("no target today")
	}}
	p2, logs2 := tn.Proxy(t, up)
	expectRefused(t, p2.Addr("up").String())
	logs2.Wait(t, "connection closed", "reason=dial_failed", "tls handshake with 127.0.0.1:", "panic: no target today")
}

// TestApplyErrorsNameGoFields: Apply's errors name the Route fields an
// embedder sets, as its other messages do (MaxConns, HoldLimit). Three of
// them named configuration-file attributes instead, one of which
// (trusted_proxies) exists nowhere: the file's is trusted_cidrs.
func TestApplyErrorsNameGoFields(t *testing.T) {
	t.Parallel()
	var p host.Proxy
	defer p.Close()
	err := p.Apply([]host.Route{
		{Name: "a", Listen: "127.0.0.1:7002", Target: "127.0.0.1:1", AcceptProxy: true},
		{Name: "b", Listen: "127.0.0.1:7003", Target: "127.0.0.1:1", ServerNames: []string{"a.example"}},
		{Name: "c", Listen: "127.0.0.1:7003", Target: "127.0.0.1:1"},
		{Name: "d", Listen: "127.0.0.1:7004", Target: "127.0.0.1:1", ServerNames: []string{"bad..name"}},
		{Name: "e", Listen: "127.0.0.1:7005", Target: "127.0.0.1:1", WireTap: func(_ *host.ConnInfo, c net.Conn) net.Conn { return c }},
	})
	if err == nil {
		t.Fatal("Apply accepted the routes")
	}
	for _, want := range []string{
		`route "a": AcceptProxy needs TrustedProxies, the networks trusted to send PROXY headers`,
		`route "c": listen address 127.0.0.1:7003 is already used by route "b" (routes share an address only when each gives ServerNames)`,
		`route "d": ServerNames: server name "bad..name" has an empty label`,
		// It was silently ignored.
		`route "e": WireTap is set but TLS is not: it taps the TLS a route terminates`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Apply error:\n%v\nwant it to contain %s", err, want)
		}
	}
	for _, attr := range []string{"accept_proxy", "trusted_proxies", "server_names"} {
		if strings.Contains(err.Error(), attr) {
			t.Errorf("Apply error names %s, not a field of host.Route:\n%v", attr, err)
		}
	}
}
