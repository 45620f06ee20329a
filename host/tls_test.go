package host_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testcert"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// tlsClient dials addr and runs a TLS handshake trusting ca for name.
func tlsClient(t *testing.T, addr string, ca *testcert.CA, name string, certs ...tls.Certificate) *tls.Conn {
	t.Helper()
	raw := tn.Dial(t, addr)
	c := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: name, Certificates: certs})
	if err := c.Handshake(); err != nil {
		t.Fatalf("tls handshake through the tunnel: %v", err)
	}
	return c
}

// terminating is a route that terminates TLS with a certificate for
// localhost issued by ca.
func terminating(t *testing.T, ca *testcert.CA, target string, chain ...host.Link) host.Route {
	r := tn.Route("tls", target, chain...)
	r.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS}, NextProtos: []string{"echo/1"}}
	return r
}

// A terminating route: the client speaks TLS, the server plaintext, and
// 1 MiB each way arrives byte for byte; filters see the plaintext and the
// session's details.
func TestTLSTerminates(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	seen := make(chan *host.ConnInfo, 1)
	first := make(chan []byte, 1)
	watch := link("watch", func(info *host.ConnInfo) (host.Filter, error) {
		seen <- info
		return &firstChunk{got: first}, nil
	})
	p, logs := tn.Proxy(t, terminating(t, ca, srv.Addr(), watch))

	c := tlsClient(t, p.Addr("tls").String(), ca, "localhost")
	out := tn.Random(1, 1<<20)
	go func() {
		c.Write(out)
		c.CloseWrite() // close_notify: the server sees the end of the stream
	}()
	got := tn.ReadSum(c)
	if got.Err != nil || got.Sum != tn.Sum(out) {
		t.Fatalf("echo through TLS: %d bytes, err %v; want %d bytes back", got.N, got.Err, len(out))
	}
	if b := <-first; !bytes.Equal(b, out[:len(b)]) {
		t.Errorf("the filter saw %x..., not the plaintext", b[:8])
	}
	info := <-seen
	if info.TLS == nil || info.TLS.ServerName != "localhost" || info.TLS.Version != tls.VersionTLS13 || info.TLS.Verified {
		t.Errorf("ConnInfo.TLS = %+v, want server name localhost, TLS 1.3, no client certificate", info.TLS)
	}
	logs.Wait(t, "connection closed", "bytes_from_client=1048576 bytes_to_server=1048576 bytes_from_server=1048576 bytes_to_client=1048576", `reason=client_eof tls.sni=localhost tls.version="TLS 1.3"`)
}

// firstChunk records a copy of the first chunk toward the server.
type firstChunk struct {
	host.PassThrough
	got chan []byte
}

func (f *firstChunk) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ClientToServer && f.got != nil {
		f.got <- bytes.Clone(b)
		f.got = nil
	}
	return s.Send(dir, b)
}

// The seeds' half-close through a terminating route with no filter: the
// client's close_notify reaches the server as end of stream while the
// other direction goes on.
func TestTLSHalfClose(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	up := bytes.Repeat([]byte("Hello from the client! "), 1000)
	down := bytes.Repeat([]byte("Hello from the server! "), 2000)
	serverGot := make(chan tn.Received, 1)
	srv := tn.Serve(t, halfCloseServer(down, serverGot))
	p, logs := tn.Proxy(t, terminating(t, ca, srv.Addr()))

	c := tlsClient(t, p.Addr("tls").String(), ca, "localhost")
	if _, err := c.Write(up); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := tn.ReadSum(c)
	if s := tn.Wait(t, serverGot, "what the server received"); s.Sum != tn.Sum(up) {
		t.Fatalf("server got %d bytes (err %v), want %d", s.N, s.Err, len(up))
	}
	if got.Err != nil || got.Sum != tn.Sum(down) {
		t.Fatalf("client got %d bytes (err %v), want %d", got.N, got.Err, len(down))
	}
	logs.Wait(t, "connection closed", "bytes_from_client=23000", "bytes_to_client=46000")
}

// A client that fails the handshake (it does not trust the certificate)
// is refused with reason=tls, and a route's next client is served.
func TestTLSHandshakeFails(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	p, logs := tn.Proxy(t, terminating(t, ca, srv.Addr()))
	addr := p.Addr("tls").String()

	other := testcert.NewCA(t, "another CA")
	c := tls.Client(tn.Dial(t, addr), &tls.Config{RootCAs: other.Pool(), ServerName: "localhost"})
	if err := c.Handshake(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("handshake with an untrusted certificate: %v, want a certificate error", err)
	}
	logs.Wait(t, "connection closed", "reason=tls", "err=\"tls handshake with the client: ")
	if srv.Accepted() != 0 {
		t.Errorf("the target was dialled %d times for a failed handshake", srv.Accepted())
	}
	c2 := tlsClient(t, addr, ca, "localhost")
	c2.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("after a failed handshake, echo gave %q, %v", buf, err)
	}
}

// A client that connects and says nothing is cut off by the handshake
// timeout, without the target ever being dialled.
func TestTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	r := terminating(t, ca, srv.Addr())
	r.HandshakeTimeout = 200 * time.Millisecond
	p, logs := tn.Proxy(t, r)
	expectRefused(t, p.Addr("tls").String())
	logs.Wait(t, "connection closed", "reason=tls", "tls handshake with the client: not done within 200ms (handshake_timeout)")
	if srv.Accepted() != 0 {
		t.Errorf("the target was dialled %d times", srv.Accepted())
	}
}

// tlsEcho serves TLS with pair and echoes.
func tlsEcho(t *testing.T, pair *testcert.Pair) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*tls.Conn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// Originating TLS: a plaintext client, a TLS server verified against the
// route's CA with the target's host as the server name.
func TestUpstreamTLS(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	target := tlsEcho(t, ca.Server(t))
	r := tn.Route("up", target)
	r.UpstreamTLS = &tls.Config{RootCAs: ca.Pool()}
	p, logs := tn.Proxy(t, r)

	out := tn.Random(2, 300<<10)
	got := tn.Exchange(tn.Dial(t, p.Addr("up").String()), out)
	if got.Err != nil || got.Sum != tn.Sum(out) {
		t.Fatalf("echo through upstream TLS: %d bytes, err %v; want %d", got.N, got.Err, len(out))
	}
	logs.Wait(t, "connection closed", "bytes_to_server=307200", "bytes_to_client=307200")

	// A target whose certificate the route does not trust: the dial fails.
	bad := testcert.NewCA(t, "untrusted")
	r2 := tn.Route("bad", tlsEcho(t, bad.Server(t)))
	r2.UpstreamTLS = &tls.Config{RootCAs: ca.Pool()}
	p2, logs2 := tn.Proxy(t, r2)
	expectRefused(t, p2.Addr("bad").String())
	logs2.Wait(t, "connection closed", "reason=dial_failed", "tls handshake with 127.0.0.1:", "certificate")
}

// Both sides TLS, and a server that stops reading: Close returns at once
// though a TLS write is blocked (teardown closes the raw sockets, never
// waits on a tls.Conn).
func TestTLSCloseWhileWriteBlocked(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	stalled := make(chan struct{})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*tls.Conn).Handshake()
		<-stalled // never reads
	}()
	defer close(stalled)
	r := terminating(t, ca, ln.Addr().String())
	r.UpstreamTLS = &tls.Config{RootCAs: ca.Pool()}
	logs := tn.NewLogs()
	p := &host.Proxy{Logger: logs.Logger()}
	if err := p.Apply([]host.Route{r}); err != nil {
		t.Fatal(err)
	}
	c := tlsClient(t, p.Addr("tls").String(), ca, "localhost")
	done := stuckWriter(t, c)
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > teardownBound {
		t.Errorf("Close took %s with a TLS write blocked", d)
	}
	waitErr(t, done, teardownBound, "after Close")
	logs.Wait(t, "connection closed", "proxy shut down")
}

// SNI routing without terminating: three routes on one address, chosen by
// the ClientHello's name (exact, wildcard, default), the hello replayed
// byte for byte so each backend completes its own handshake; a name no
// route takes gets unrecognized_name. One route terminates TLS itself.
func TestServerNameRouting(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	listen := testkit.FreeAddr(t)
	route := func(name, target string, names ...string) host.Route {
		return host.Route{Name: name, Listen: listen, Target: target, ServerNames: names}
	}
	a := route("a", tlsEcho(t, ca.Server(t, "a.example")), "a.example")
	b := route("b", tlsEcho(t, ca.Server(t, "x.b.example")), "*.b.example")
	term := route("term", tn.Serve(t, tn.Echo).Addr(), "plain.example")
	term.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "plain.example").TLS}}
	p, logs := tn.Proxy(t, a, b, term)

	for _, name := range []string{"a.example", "x.b.example", "plain.example"} {
		c := tlsClient(t, listen, ca, name)
		out := tn.Random(3, 100<<10)
		go func() { c.Write(out); c.CloseWrite() }()
		if got := tn.ReadSum(c); got.Err != nil || got.Sum != tn.Sum(out) {
			t.Fatalf("%s: echo gave %d bytes, err %v", name, got.N, got.Err)
		}
		c.Close() // close_notify was only TLS's end: the TCP stream ends here
	}
	logs.Wait(t, "connection closed", "route=a")
	logs.Wait(t, "connection closed", "route=b")
	logs.Wait(t, "connection closed", "route=term")

	// No default: an unknown name is refused with the alert.
	c := tls.Client(tn.Dial(t, listen), &tls.Config{RootCAs: ca.Pool(), ServerName: "nobody.example"})
	if err := c.Handshake(); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("unknown name: handshake gave %v, want the unrecognized_name alert", err)
	}
	refused := logs.Wait(t, "connection closed", "reason=no_route", `no route for server name \"nobody.example\"`)
	// The hello was read: it counts as bytes from the client (it was 0).
	if m := regexp.MustCompile(`bytes_from_client=(\d+) bytes_to_server=0 `).FindStringSubmatch(refused); m == nil || m[1] == "0" {
		t.Errorf("the refused hello's bytes are not counted: %s", refused)
	}
	// Half a ClientHello, then a reset (a scanner, a health check that
	// resets): a reset, not a routing question; half a hello then the
	// client's end: a failed handshake.
	rst := tn.Dial(t, listen)
	rst.Write([]byte{22, 3, 1, 0, 200, 1})
	rst.SetLinger(0)
	rst.Close()
	logs.Wait(t, "connection closed", "route=a", "reason=reset", "choosing a route by server name")
	half := tn.Dial(t, listen)
	half.Write([]byte{22, 3, 1, 0, 200, 1})
	half.CloseWrite()
	logs.Wait(t, "connection closed", "route=a", "reason=tls", "choosing a route by server name")
	half.Close()
	stats := p.Stats()
	if !slices.ContainsFunc(stats, func(s host.RouteStats) bool { return s.Route == "a" }) {
		t.Errorf("no stats for route a: %+v", stats)
	}
	for _, s := range stats {
		if s.Route == "a" && s.Rejected["no_route"] != 1 {
			t.Errorf("route a (the address's first) counts %d no_route rejections, want 1\n%s", s.Rejected["no_route"], logs)
		}
	}

	// With a default, the unknown name and a non-TLS client go there.
	def := route("def", tn.Serve(t, tn.Echo).Addr(), "*")
	if err := p.Apply([]host.Route{a, b, term, def}); err != nil {
		t.Fatal(err)
	}
	got := tn.Exchange(tn.Dial(t, listen), []byte("GET / HTTP/1.0\r\n\r\n"))
	if got.Err != nil || got.Sum != tn.Sum([]byte("GET / HTTP/1.0\r\n\r\n")) {
		t.Fatalf("plain client to the default route: %d bytes, err %v", got.N, got.Err)
	}
	logs.Wait(t, "connection closed", "route=def", "bytes_to_server=18")
}

// Routes sharing an address must each give server names, without repeats.
func TestServerNamesValidated(t *testing.T) {
	t.Parallel()
	r := func(name string, names ...string) host.Route {
		return host.Route{Name: name, Listen: "127.0.0.1:7001", Target: "127.0.0.1:1", ServerNames: names}
	}
	var p host.Proxy
	err := p.Apply([]host.Route{r("a", "a.example"), r("b"), r("c", "A.example", "*"), r("d", "*", "bad..name")})
	for _, want := range []string{
		`route "b": listen address 127.0.0.1:7001 is already used by route "a"`,
		`route "c": server name "A.example" is also route "a"'s on 127.0.0.1:7001`,
		`route "d": server name "*" is also route "c"'s`,
		`route "d": ServerNames: server name "bad..name" has an empty label`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Apply error %v\nwant it to contain %s", err, want)
		}
	}
}

// A load balancer's PROXY header: the route believes it from a trusted
// network (the client address in the log is the header's), refuses it
// from elsewhere, and refuses a malformed one, naming the peer.
func TestAcceptProxy(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	r := tn.Route("lb", srv.Addr())
	r.AcceptProxy = true
	r.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p, logs := tn.Proxy(t, r)
	addr := p.Addr("lb").String()

	body := []byte("hello behind a balancer")
	for _, header := range []string{
		"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x02\x7f\x00\x00\x01\x15\xb3\x00\x50",
	} {
		got := tn.Exchange(tn.Dial(t, addr), append([]byte(header), body...))
		if got.Err != nil || got.Sum != tn.Sum(body) {
			t.Fatalf("after a PROXY header: echo gave %d bytes, err %v; want the body only", got.N, got.Err)
		}
	}
	logs.Wait(t, "connection closed", "client=192.0.2.1:5555", "bytes_from_client=23")
	logs.Wait(t, "connection closed", "client=192.0.2.2:5555", "bytes_from_client=23")

	c := tn.Dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if _, err := c.Read(make([]byte, 1)); !tn.IsClosed(err) {
		t.Fatalf("no PROXY header: read gave %v, want closed", err)
	}
	logs.Wait(t, "connection closed", "reason=proxy_header", "PROXY header from 127.0.0.1: ")

	r2 := tn.Route("untrusted", srv.Addr())
	r2.AcceptProxy = true
	r2.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	p2, logs2 := tn.Proxy(t, r2)
	expectRefused(t, p2.Addr("untrusted").String())
	logs2.Wait(t, "connection closed", "reason=proxy_header", "peer 127.0.0.1 is not in the trusted networks")

	// A PROXY header passed on: the source and the destination are the
	// received header's, as HAProxy passes them (the destination was once
	// the tunnel's own listen address).
	headers := make(chan string, 1)
	hsrv := tn.Serve(t, func(c *net.TCPConn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		headers <- line
	})
	r3 := tn.Route("chained", hsrv.Addr(), host.Link{Name: "proxy", Hook: host.ProxyProtocol(), Directions: host.OnlyClientToServer})
	r3.AcceptProxy = true
	r3.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p3, _ := tn.Proxy(t, r3)
	c3 := tn.Dial(t, p3.Addr("chained").String())
	c3.Write([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\nhi"))
	if got, want := <-headers, "PROXY TCP4 192.0.2.7 198.51.100.1 5555 443\r\n"; got != want {
		t.Errorf("header passed on %q, want %q", got, want)
	}
}

// TestHealthCheckIsAnOrderlyClose: a client that connects and leaves
// without a byte (a load balancer's TCP health check) on a route that
// terminates TLS or reads a PROXY header ends as client_eof, logged at
// INFO and not counted as an error, as on a plain route or one routing by
// server name; it was a failed handshake (reason tls) or a bad header
// (proxy_header), a WARN line and an error every few seconds per
// balancer. A client that sent half a ClientHello or half a header, then
// left, still fails as tls or proxy_header, and one that resets first is
// a reset.
func TestHealthCheckIsAnOrderlyClose(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	lb := tn.Route("lb", srv.Addr())
	lb.AcceptProxy = true
	lb.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p, logs := tn.Proxy(t, terminating(t, ca, srv.Addr()), lb)
	for _, r := range []struct{ name, half, reason string }{
		{"tls", "\x16\x03\x01\x00\xff\x01", "reason=tls"}, // a record header announcing 255 bytes, then one
		{"lb", "PROXY TCP4 ", "reason=proxy_header"},
	} {
		addr := p.Addr(r.name).String()
		c := tn.Dial(t, addr)
		c.Close()
		logs.Wait(t, "level=INFO", "connection closed", "route="+r.name, "reason=client_eof")

		c = tn.Dial(t, addr)
		c.Write([]byte(r.half))
		c.CloseWrite()
		logs.Wait(t, "level=WARN", "connection closed", "route="+r.name, r.reason)
		c.Close()

		c = tn.Dial(t, addr)
		c.SetLinger(0)
		c.Close() // a reset
		logs.WaitCount(t, 2, "level=WARN", "connection closed", "route="+r.name)
	}
	for _, st := range p.Stats() {
		if st.Closed["client_eof"] != 1 || st.Errors != 2 {
			t.Errorf("route %s: Closed %v, Errors %d; want client_eof 1 and 2 errors", st.Route, st.Closed, st.Errors)
		}
	}
	if n := logs.Count("level=WARN", "route=tls", "reason=reset"); n != 1 {
		t.Errorf("%d resets logged on the TLS route, want 1:\n%s", n, logs)
	}
}

// wireTap records what crosses the client socket of a TLS route.
type wireTap struct {
	net.Conn
	in, out *bytes.Buffer
	mu      *sync.Mutex
}

func (w wireTap) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	w.mu.Lock()
	w.in.Write(b[:n])
	w.mu.Unlock()
	return n, err
}

func (w wireTap) Write(b []byte) (int, error) {
	n, err := w.Conn.Write(b)
	w.mu.Lock()
	w.out.Write(b[:n])
	w.mu.Unlock()
	return n, err
}

// Route.WireTap sees the ciphertext of a terminating route's client side:
// a handshake record first, and none of the plaintext.
func TestTLSWireTap(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	var mu sync.Mutex
	in, out := &bytes.Buffer{}, &bytes.Buffer{}
	r := terminating(t, ca, tn.Serve(t, tn.Echo).Addr())
	tapped := make(chan *host.ConnInfo, 1)
	r.WireTap = func(info *host.ConnInfo, c net.Conn) net.Conn {
		tapped <- info
		return wireTap{Conn: c, in: in, out: out, mu: &mu}
	}
	p, logs := tn.Proxy(t, r)
	c := tlsClient(t, p.Addr("tls").String(), ca, "localhost")
	secret := []byte("a secret that only the plaintext holds")
	go func() { c.Write(secret); c.CloseWrite() }()
	if got := tn.ReadSum(c); got.Sum != tn.Sum(secret) {
		t.Fatalf("echo: %d bytes, %v", got.N, got.Err)
	}
	logs.Wait(t, "connection closed")
	if info := <-tapped; info.Route != "tls" {
		t.Errorf("WireTap got route %q", info.Route)
	}
	mu.Lock()
	defer mu.Unlock()
	if in.Len() < 100 || in.Bytes()[0] != 0x16 || out.Len() < 100 || out.Bytes()[0] != 0x16 {
		t.Fatalf("the tap saw %d bytes in, %d out; want TLS handshake records first", in.Len(), out.Len())
	}
	if bytes.Contains(in.Bytes(), secret) || bytes.Contains(out.Bytes(), secret) {
		t.Error("the tap saw the plaintext")
	}
}

// A reload while a connection waits for its ClientHello: the connection is
// routed by the routes it was accepted with, to any of them, and a client
// that connects and leaves without a byte (a health check) is an orderly
// close, not a refusal.
func TestServerNameRoutingAcrossReload(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	listen := testkit.FreeAddr(t)
	route := func(name, target string, names ...string) host.Route {
		return host.Route{Name: name, Listen: listen, Target: target, ServerNames: names}
	}
	released := make(chan string, 4)
	a := route("a", tlsEcho(t, ca.Server(t, "a.example")), "a.example")
	b := route("b", tlsEcho(t, ca.Server(t, "b.example")), "b.example")
	a.OnRelease = func() { released <- "a" }
	b.OnRelease = func() { released <- "b" }
	p, logs := tn.Proxy(t, a, b)

	raw := tn.Dial(t, listen) // accepted, no hello yet
	a.OnRelease, b.OnRelease = nil, nil
	if err := p.Apply([]host.Route{a, b}); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "b.example"})
	go func() { c.Write([]byte("after the reload")); c.CloseWrite() }()
	if got := tn.ReadSum(c); got.Sum != tn.Sum([]byte("after the reload")) {
		t.Fatalf("routed after a reload: %d bytes, %v", got.N, got.Err)
	}
	c.Close()
	logs.Wait(t, "connection closed", "route=b")
	// Both old states are released once their connection is gone.
	for range 2 {
		select {
		case <-released:
		case <-time.After(tn.Timeout):
			t.Fatal("an old route state was never released")
		}
	}

	hc := tn.Dial(t, listen)
	hc.Close()
	logs.Wait(t, "connection closed", "route=a", "reason=client_eof")
	if n := logs.Count("reason=no_route"); n != 0 {
		t.Errorf("%d no_route closes, want none", n)
	}
}

// A plaintext client on the default route has no ConnInfo.TLS.
func TestServerNameDefaultPlaintext(t *testing.T) {
	t.Parallel()
	listen := testkit.FreeAddr(t)
	seen := make(chan *host.TLSInfo, 1)
	watch := link("watch", func(info *host.ConnInfo) (host.Filter, error) {
		seen <- info.TLS
		return host.PassThrough{}, nil
	})
	def := host.Route{Name: "def", Listen: listen, Target: tn.Serve(t, tn.Echo).Addr(), ServerNames: []string{"*"}, Chain: []host.Link{watch}}
	tn.Proxy(t, def)
	if got := tn.Exchange(tn.Dial(t, listen), []byte("PING\r\n")); got.N != 6 {
		t.Fatalf("echo through the default route: %d bytes, %v", got.N, got.Err)
	}
	if info := <-seen; info != nil {
		t.Errorf("ConnInfo.TLS = %+v for a plaintext client, want nil", info)
	}
}

// Routes sharing an address must agree on what belongs to the address.
func TestServerNamesSharedSettings(t *testing.T) {
	t.Parallel()
	a := host.Route{Name: "a", Listen: "127.0.0.1:7004", Target: "127.0.0.1:1", ServerNames: []string{"a.example"},
		AcceptProxy: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	b := a
	b.Name, b.ServerNames = "b", []string{"b.example"}
	b.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	b.MaxConns, b.HandshakeTimeout = 1, time.Hour
	var p host.Proxy
	err := p.Apply([]host.Route{a, b})
	for _, want := range []string{
		`route "b": routes sharing 127.0.0.1:7004 must agree on trusted_cidrs (route "a" differs)`,
		`route "b": routes sharing 127.0.0.1:7004 must agree on max_connections (route "a" differs)`,
		`route "b": routes sharing 127.0.0.1:7004 must agree on handshake_timeout (route "a" differs)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Apply: %v\nwant it to contain %s", err, want)
		}
	}
}

// timerTarget chooses the target from its timer, while the client's
// bytes wait.
type timerTarget struct {
	host.PassThrough
	target string
}

func (f *timerTarget) Opened(s *host.Stream) error { return s.SetTimer(50 * time.Millisecond) }
func (f *timerTarget) Timer(s *host.Stream) error  { return s.SetTarget(f.target) }

// A late-dial route that terminates TLS, whose target a timer chooses
// while the client -> server read waits inside the TLS session: the wake-up
// (a read deadline on the socket) is not the session's error, and the
// bytes held meanwhile arrive.
func TestTLSLateDialFromTimer(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	target := tn.Serve(t, tn.Echo).Addr()
	r := terminating(t, ca, "", link("choose", func(*host.ConnInfo) (host.Filter, error) {
		return &timerTarget{target: target}, nil
	}))
	r.LateDial = true
	p, logs := tn.Proxy(t, r)
	c := tlsClient(t, p.Addr("tls").String(), ca, "localhost")
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("echo after a timer chose the target: %q, %v", got, err)
	}
	c.Close()
	logs.Wait(t, "connection closed", "bytes_to_server=4")
}

// An explicit handshake timeout equal to the default agrees with an unset
// one: the address's listener reads with the same deadline either way.
func TestServerNamesSharedDefaultHandshakeTimeout(t *testing.T) {
	t.Parallel()
	a := host.Route{Name: "a", Listen: "127.0.0.1:0", Target: "127.0.0.1:1", ServerNames: []string{"a.example"},
		HandshakeTimeout: host.DefaultHandshakeTimeout}
	b := a
	b.Name, b.ServerNames, b.HandshakeTimeout = "b", []string{"b.example"}, 0
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free fixed port for both routes
	if err != nil {
		t.Fatal(err)
	}
	a.Listen = ln.Addr().String()
	ln.Close()
	b.Listen = a.Listen
	var p host.Proxy
	if err := p.Apply([]host.Route{a, b}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p.Close()
}

// A client that sends nothing, or half a ClientHello or PROXY header, is
// cut off by handshake_timeout, and the log says so (not a bare "i/o
// timeout"); a short plaintext message ("hi\n", less than a record header)
// goes to the "*" route at once instead of waiting for that timeout.
func TestHandshakeTimeoutNamed(t *testing.T) {
	t.Parallel()
	listen := testkit.FreeAddr(t)
	a := host.Route{Name: "a", Listen: listen, Target: tn.Serve(t, tn.Echo).Addr(), ServerNames: []string{"a.example"}, HandshakeTimeout: 300 * time.Millisecond}
	_, logs := tn.Proxy(t, a)
	expectRefused(t, listen)
	logs.Wait(t, "connection closed", "reason=tls", "no whole ClientHello within 300ms (handshake_timeout; 0 bytes read)")

	lb := tn.Route("lb", tn.Serve(t, tn.Echo).Addr())
	lb.AcceptProxy, lb.HandshakeTimeout = true, 300*time.Millisecond
	lb.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	p2, logs2 := tn.Proxy(t, lb)
	c := tn.Dial(t, p2.Addr("lb").String())
	c.Write([]byte("PROXY TCP4 192.0.2.1"))
	if _, err := c.Read(make([]byte, 1)); !tn.IsClosed(err) {
		t.Fatalf("half a PROXY header: read gave %v, want closed", err)
	}
	logs2.Wait(t, "connection closed", "reason=proxy_header", "not complete within 300ms (handshake_timeout)")

	listen3 := testkit.FreeAddr(t)
	def := host.Route{Name: "def", Listen: listen3, Target: tn.Serve(t, tn.Echo).Addr(), ServerNames: []string{"*"}, HandshakeTimeout: time.Minute}
	tn.Proxy(t, def)
	tn.EchoOnce(t, tn.Dial(t, listen3), "hi\n") // 3 bytes of plaintext, shorter than a record header
}

// A client certificate that fails verification (another CA) is named in
// the refusal, as one refused by the allow rules is.
func TestTLSClientCertRefusalNamed(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	srv := tn.Serve(t, tn.Echo)
	r := terminating(t, ca, srv.Addr())
	r.TLS.ClientCAs = ca.Pool()
	r.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	p, logs := tn.Proxy(t, r)
	other := testcert.NewCA(t, "another CA")
	mallory := other.Client(t, "mallory")
	c := tls.Client(tn.Dial(t, p.Addr("tls").String()), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost",
		// Sent although the server asks for another CA's.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &mallory.TLS, nil }})
	if err := c.Handshake(); err == nil {
		c.Read(make([]byte, 1)) // TLS 1.3: the refusal comes after the client's Finished
	}
	logs.Wait(t, "connection closed", "reason=tls", `client certificate \"CN=mallory`, "certificate signed by unknown authority")
}

// A ClientHello that does not parse (here a server name ending with a dot,
// which RFC 6066 forbids) on an address routed by server name gets the
// decode_error alert a terminating route's crypto/tls sends, not a bare
// close.
func TestServerNameMalformedAlert(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	listen := testkit.FreeAddr(t)
	a := host.Route{Name: "a", Listen: listen, Target: tn.Serve(t, tn.Echo).Addr(), ServerNames: []string{"a.example"}}
	_, logs := tn.Proxy(t, a)
	// crypto/tls refuses to send a name ending with a dot: rewrite one
	// letter of a hello's name into a dot, lengths unchanged.
	raw := clientHello(t, ca, "a.examplex")
	i := bytes.Index(raw, []byte("a.examplex"))
	raw[i+len("a.examplex")-1] = '.'
	c := tn.Dial(t, listen)
	c.Write(raw)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if want := []byte{21, 3, 3, 0, 2, 2, 50}; !bytes.Equal(got, want) {
		t.Fatalf("malformed hello: got %v, want the decode_error alert %v", got, want)
	}
	logs.Wait(t, "connection closed", "reason=tls", `the server name \"a.example.\" ends with a dot`)
}

// clientHello returns the first flight of a crypto/tls client asking for
// name.
func clientHello(t *testing.T, ca *testcert.CA, name string) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c1.Close()
	go func() {
		tls.Client(c2, &tls.Config{RootCAs: ca.Pool(), ServerName: name}).Handshake()
		c2.Close()
	}()
	var buf [64 << 10]byte
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c1, hdr); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if _, err := io.ReadFull(c1, buf[:n]); err != nil {
		t.Fatal(err)
	}
	return append(hdr, buf[:n]...)
}

// With insecure_skip_verify and no server name, the target's host is still
// sent as SNI (the documented default): a target that routes by name
// needs it whether or not the tunnel verifies the answer.
func TestUpstreamTLSInsecureSendsHost(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "test CA")
	names := make(chan string, 1)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			names <- h.ServerName
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := tn.Route("up", net.JoinHostPort("localhost", port))
	r.UpstreamTLS = &tls.Config{InsecureSkipVerify: true}
	p, _ := tn.Proxy(t, r)
	c := tn.Dial(t, p.Addr("up").String())
	c.Write([]byte("x"))
	select {
	case name := <-names:
		if name != "localhost" {
			t.Fatalf("SNI toward the target %q, want its host \"localhost\"", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the target saw no handshake")
	}
}
