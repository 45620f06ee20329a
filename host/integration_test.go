package host_test

// The life of connections and routes over real loopback sockets: targets
// that refuse or never answer, peers that reset or stop reading, live
// reloads, the connection cap and shutdown. TestMain fails the package if
// any goroutine is still alive once every test is done.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

func TestMain(m *testing.M) {
	// The parallel tests and subtests mostly wait (on a linger, a dial
	// that never answers, an idle timeout): about 23 s of them took 12 s
	// two at a time. Eight at a time unless -parallel says otherwise; their
	// bounds are on what the tunnel does, never on how fast the machine is.
	testkit.DefaultParallel(8)
	goleak.VerifyTestMain(m)
}

// noLeaks fails t if, once its cleanups have run, goroutines other than
// those alive now are left. Only for tests that do not run in parallel.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// seqPaths runs f once per forwarding path, one after the other.
func seqPaths(t *testing.T, f func(t *testing.T, route func(target string) host.Route)) {
	for _, p := range forwardPaths {
		t.Run(p.name, func(t *testing.T) { f(t, p.route) })
	}
}

// expectRefused dials addr and fails unless the tunnel closes the
// connection without sending anything. The tunnel may reset it so fast that
// the reset reaches the client before its connect(2) returns.
func expectRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, tn.Timeout)
	if err != nil {
		if !tn.IsClosed(err) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(tn.Timeout))
	expectClosed(t, c)
}

// expectClosed reads c and fails unless the tunnel closes it (EOF or reset)
// without sending anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	rest, err := io.ReadAll(c)
	if len(rest) != 0 || (err != nil && !tn.IsClosed(err)) {
		t.Fatalf("read %q, %v; want the connection closed", rest, err)
	}
}

// TestTargetRefuses: the client of a route whose target refuses is closed
// at once, the log names the target and the error, and the route keeps
// serving once the target is back.
func TestTargetRefuses(t *testing.T) {
	t.Parallel()
	target := testkit.FreeAddr(t) // the target comes back on this port below
	addr, _, logs := tn.Tunnel(t, target)

	start := time.Now()
	expectRefused(t, addr)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("client closed after %v; a refused dial should close it at once", d)
	}
	logs.Wait(t, "connection closed", "dial "+target, "connection refused")

	// The target comes back on the same port: the same route reaches it.
	srv := tn.ServeAt(t, target, tn.Echo)
	if back := roundTrip(t, tn.Dial(t, addr), []byte("up again")); string(back) != "up again" {
		t.Errorf("echo once the target is back: %q", back)
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("target accepted %d connections, want 1", n)
	}
}

// TestDialTimeout: a target that never answers is given up after the
// route's DialTimeout; the client is closed and the log says why.
func TestDialTimeout(t *testing.T) {
	t.Parallel()
	target := testkit.BlackHole(t)
	p, logs := tn.Proxy(t, host.Route{Name: "slow", Listen: "127.0.0.1:0", Target: target, DialTimeout: 300 * time.Millisecond})
	start := time.Now()
	expectRefused(t, p.Addr("slow").String())
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("client closed after %v, want about the 300ms dial timeout", d)
	}
	logs.Wait(t, "connection closed", "dial "+target, "i/o timeout")
}

// TestClientResets: the client resets in the middle of a download; the
// tunnel resets the server too, logs the error and leaves nothing behind.
func TestClientResets(t *testing.T) {
	noLeaks(t)
	seqPaths(t, func(t *testing.T, route func(string) host.Route) {
		serverErr := make(chan error, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(tn.Timeout))
			chunk := make([]byte, 64<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					serverErr <- err
					return
				}
			}
		})
		addr, logs := tunnel(t, route(srv.Addr()))
		c := tn.Dial(t, addr)
		if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		c.SetLinger(0)
		c.Close()
		if err := <-serverErr; !tn.IsClosed(err) {
			t.Errorf("server write: %v, want a reset or broken pipe", err)
		}
		logs.Wait(t, "connection closed", "err=")
	})
}

// TestServerResets: the server resets while the client is uploading; the
// client sees its connection reset or closed, not a hang.
func TestServerResets(t *testing.T) {
	noLeaks(t)
	seqPaths(t, func(t *testing.T, route func(string) host.Route) {
		srv := tn.Serve(t, func(c *net.TCPConn) {
			io.ReadFull(c, make([]byte, 1<<20))
			c.SetLinger(0)
			c.Close()
		})
		addr, logs := tunnel(t, route(srv.Addr()))
		c := tn.Dial(t, addr)
		writeErr := make(chan error, 1)
		go func() {
			chunk := make([]byte, 64<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
		}()
		_, err := io.ReadAll(c)
		if err != nil && !tn.IsClosed(err) {
			t.Errorf("client read: %v, want EOF or a reset", err)
		}
		if err := <-writeErr; !tn.IsClosed(err) {
			t.Errorf("client write: %v, want a reset or broken pipe", err)
		}
		logs.Wait(t, "connection closed", "err=")
	})
}

// TestSlowReader: a client that stops reading makes the tunnel stop
// reading from the server, so the server's writes block after a bounded
// amount and the tunnel's memory does not grow; once the client reads
// again the bytes flow, in order and intact. The forwarding paths run side
// by side (each waits out the same quiet period), and the heap is measured
// across all of them: eight stalled connections together may not grow it
// by more than one was allowed to alone.
func TestSlowReader(t *testing.T) {
	noLeaks(t)
	const size = 96 << 20
	const bound = 40 << 20 // kernel socket buffers on both legs plus the tunnel's own
	// The writes have stalled when none has returned for quiet, timed from
	// the last one that did (each path's time of last progress, checked
	// every 10 ms; it was "no progress between two looks 300 ms apart").
	const quiet = 500 * time.Millisecond
	payload := tn.Random(9, size)
	type leg struct {
		name     string
		addr     string
		written  atomic.Int64
		progress atomic.Int64 // UnixNano of the last write that returned
		conn     *net.TCPConn
	}
	legs := make([]*leg, len(forwardPaths))
	for i, p := range forwardPaths {
		l := &leg{name: p.name}
		l.progress.Store(time.Now().UnixNano())
		srv := tn.Serve(t, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(tn.Timeout))
			for off := 0; off < size; off += 64 << 10 {
				n, err := c.Write(payload[off : off+64<<10])
				l.written.Add(int64(n))
				l.progress.Store(time.Now().UnixNano())
				if err != nil {
					return
				}
			}
			c.CloseWrite()
		})
		l.addr, _ = tunnel(t, p.route(srv.Addr()))
		legs[i] = l
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	for _, l := range legs {
		l.conn = tn.Dial(t, l.addr)
	}
	deadline := time.Now().Add(tn.Timeout)
	for {
		stalled := true
		for _, l := range legs {
			stalled = stalled && time.Since(time.Unix(0, l.progress.Load())) >= quiet
		}
		if stalled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's writes did not stall within %s", tn.Timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	for _, l := range legs {
		t.Logf("%s: server wrote %d KiB before blocking", l.name, l.written.Load()>>10)
		if w := l.written.Load(); w >= bound {
			t.Errorf("%s: server wrote %d MiB to a client that reads nothing, want less than %d MiB", l.name, w>>20, bound>>20)
		}
	}
	t.Logf("heap in use grew by %d KiB for %d stalled connections", grew>>10, len(legs))
	if grew > 8<<20 {
		t.Errorf("heap in use grew by %d MiB while the clients were not reading", grew>>20)
	}
	// Reading again resumes the flow, in order and intact.
	const check = 16 << 20
	want := tn.Sum(payload[:check])
	var wg sync.WaitGroup
	for _, l := range legs {
		wg.Go(func() {
			got := make([]byte, check)
			if _, err := io.ReadFull(l.conn, got); err != nil || tn.Sum(got) != want {
				t.Errorf("%s: after resuming, the first %d MiB read (err %v) differ from those sent", l.name, check>>20, err)
			}
		})
	}
	wg.Wait()
}

// xorHook flips the bits of key in every client -> server byte and counts
// its Close calls (made by an owner, see owner); with an echo server the client gets its bytes back
// XORed, which tells which generation of a route served it.
type xorHook struct {
	key    byte
	closes atomic.Int32
	closed chan struct{}
}

func newXorHook(key byte) *xorHook { return &xorHook{key: key, closed: make(chan struct{})} }

func (h *xorHook) Open(*host.ConnInfo) (host.Filter, error) {
	return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
		if dir == host.ClientToServer {
			out := make([]byte, len(chunk))
			for i, b := range chunk {
				out[i] = b ^ h.key
			}
			return s.Send(dir, out)
		}
		return s.Send(dir, chunk)
	}}, nil
}

func (h *xorHook) Close() error {
	if h.closes.Add(1) == 1 {
		close(h.closed)
	}
	return nil
}

// owner closes the hooks it made the way their maker does through
// Route.OnRelease: every applied route version holds a reference to each of
// its closable hooks, and a hook is closed when its last reference goes.
type owner struct {
	mu   sync.Mutex
	refs map[io.Closer]int
	// pending counts the route versions not released yet.
	pending sync.WaitGroup
}

// waitReleased waits until every route version it owns is released.
func (o *owner) waitReleased(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() { o.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(tn.Timeout):
		t.Fatalf("route versions not released %v after Close", tn.Timeout)
	}
}

// own returns r with an OnRelease that drops its references.
func (o *owner) own(r host.Route) host.Route {
	var hooks []io.Closer
	o.mu.Lock()
	if o.refs == nil {
		o.refs = map[io.Closer]int{}
	}
	for _, l := range r.Chain {
		if c, ok := l.Hook.(io.Closer); ok {
			hooks = append(hooks, c)
			o.refs[c]++
		}
	}
	o.mu.Unlock()
	var released atomic.Bool
	o.pending.Add(1)
	r.OnRelease = func() {
		if released.Swap(true) {
			panic("OnRelease called twice for one route version")
		}
		defer o.pending.Done()
		for _, c := range hooks {
			o.mu.Lock()
			o.refs[c]--
			last := o.refs[c] == 0
			o.mu.Unlock()
			if last {
				c.Close()
			}
		}
	}
	return r
}

// xorOf returns s with every byte XORed with key.
func xorOf(s string, key byte) string {
	b := []byte(s)
	for i := range b {
		b[i] ^= key
	}
	return string(b)
}

// ask sends msg on the open connection c and returns the echo.
func ask(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	return string(got)
}

func route(listen, target string, links ...host.Link) host.Route {
	return host.Route{Name: "r", Listen: listen, Target: target, Chain: links}
}

// TestReloadKeepsListener: clients dialling in a loop during twenty
// Applies on the same listen address are never refused.
func TestReloadKeepsListener(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, route("127.0.0.1:0", srv.Addr()))
	addr := p.Addr("r").String()

	load := testkit.StartLoad(1, func(_, n int) error {
		c, err := net.DialTimeout("tcp", addr, tn.Timeout)
		if err != nil {
			return fmt.Errorf("client during reload, after %d good connections: %w", n, err)
		}
		c.SetDeadline(time.Now().Add(tn.Timeout))
		io.WriteString(c, "k")
		_, err = io.ReadFull(c, make([]byte, 1))
		c.Close()
		if err != nil {
			return fmt.Errorf("client during reload, after %d good connections: %w", n, err)
		}
		return nil
	})
	for i := range 20 {
		key := byte(i % 2)
		if err := p.Apply([]host.Route{route("127.0.0.1:0", srv.Addr(), host.Link{Name: "x", Hook: newXorHook(key)})}); err != nil {
			t.Fatal(err)
		}
		load.Wait(t, 2, tn.Timeout) // two connections through each generation
	}
	for _, err := range load.Stop() {
		t.Fatal(err)
	}
	if got := p.Addr("r").String(); got != addr {
		t.Errorf("listener moved from %s to %s", addr, got)
	}
}

// TestReloadGenerations: a connection keeps the chain it was accepted with
// across an Apply, new ones get the new chain, and a generation's
// OnRelease runs once, when its last connection ends, so that its owner
// closes each hook once; a hook in both generations stays open.
func TestReloadGenerations(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	gen1, gen2, shared := newXorHook(1), newXorHook(2), newXorHook(0)
	var o owner
	p, _ := tn.Proxy(t, o.own(route("127.0.0.1:0", srv.Addr(),
		host.Link{Name: "gen1", Hook: gen1}, host.Link{Name: "shared", Hook: shared})))
	addr := p.Addr("r").String()

	old := tn.Dial(t, addr)
	if got := ask(t, old, "abc"); got != xorOf("abc", 1) {
		t.Fatalf("generation 1: %q", got)
	}
	if err := p.Apply([]host.Route{o.own(route("127.0.0.1:0", srv.Addr(),
		host.Link{Name: "gen2", Hook: gen2}, host.Link{Name: "shared", Hook: shared}))}); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, old, "def"); got != xorOf("def", 1) {
		t.Errorf("open connection after reload: %q, want generation 1's %q", got, xorOf("def", 1))
	}
	fresh := tn.Dial(t, addr)
	if got := ask(t, fresh, "ghi"); got != xorOf("ghi", 2) {
		t.Errorf("new connection after reload: %q, want generation 2's %q", got, xorOf("ghi", 2))
	}
	if n := gen1.closes.Load(); n != 0 {
		t.Fatalf("generation 1's hook closed %d times while its connection is open", n)
	}
	old.Close()
	select {
	case <-gen1.closed:
	case <-time.After(tn.Timeout):
		t.Fatal("generation 1's hook not closed after its last connection ended")
	}
	fresh.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := shared.closes.Load(); n != 1 {
		t.Errorf("shared hook closed %d times, want once at Close", n)
	}
	if a, b := gen1.closes.Load(), gen2.closes.Load(); a != 1 || b != 1 {
		t.Errorf("hooks closed %d and %d times, want once each", a, b)
	}
}

// TestReloadRetargetsAndRemoves: an Apply that points a route elsewhere
// sends new connections to the new target while open ones stay with the
// old; an Apply without the route stops its listener and lets its open
// connection finish.
func TestReloadRetargetsAndRemoves(t *testing.T) {
	t.Parallel()
	greeter := func(name string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) {
			io.WriteString(c, name)
			tn.Echo(c)
		}
	}
	a, b := tn.Serve(t, greeter("A")), tn.Serve(t, greeter("B"))
	p, logs := tn.Proxy(t, route("127.0.0.1:0", a.Addr()))
	addr := p.Addr("r").String()
	hello := func(c net.Conn) string {
		got := make([]byte, 1)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	first := tn.Dial(t, addr)
	if got := hello(first); got != "A" {
		t.Fatalf("first connection reached %q, want A", got)
	}
	if err := p.Apply([]host.Route{route("127.0.0.1:0", b.Addr())}); err != nil {
		t.Fatal(err)
	}
	second := tn.Dial(t, addr)
	if got := hello(second); got != "B" {
		t.Errorf("connection after the retarget reached %q, want B", got)
	}
	if got := ask(t, first, "still A"); got != "still A" {
		t.Errorf("first connection after the retarget: %q", got)
	}

	if err := p.Apply(nil); err != nil {
		t.Fatal(err)
	}
	logs.Wait(t, "stopped listening", "route=r")
	if p.Addr("r") != nil {
		t.Error("removed route still has an address")
	}
	if c, err := net.DialTimeout("tcp", addr, tn.Timeout); err == nil {
		c.Close()
		t.Error("removed route still accepts")
	}
	if got := ask(t, second, "finishing"); got != "finishing" {
		t.Errorf("open connection of the removed route: %q", got)
	}
	if a.Accepted() != 1 || b.Accepted() != 1 {
		t.Errorf("targets accepted %d and %d connections, want 1 each", a.Accepted(), b.Accepted())
	}
}

// TestShutdownAbortsDial: a connection still dialling an unanswering
// target when Shutdown's deadline passes is given up at once, not after
// its route's long dial timeout.
func TestShutdownAbortsDial(t *testing.T) {
	t.Parallel()
	target := testkit.BlackHole(t)
	p, logs := tn.Proxy(t, host.Route{Name: "r", Listen: "127.0.0.1:0", Target: target, DialTimeout: time.Minute})
	c := tn.Dial(t, p.Addr("r").String())
	logs.Wait(t, "connection opened")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v; the dial should have been abandoned at the deadline", d)
	}
	expectClosed(t, c)
	logs.Wait(t, "connection closed", `err="proxy shut down"`)
}

// genHook is one generation's hook in TestReloadStress: it counts its
// filters and its Close calls (made by an owner through OnRelease), and
// notes any use after its Close.
type genHook struct {
	opens, filtersClosed, closes, lateUse atomic.Int64
	inline                                bool // an InlineHook: its route runs on a loop of its own
}

// Inline implements host.InlineHook.
func (h *genHook) Inline() bool { return h.inline }

func (h *genHook) Open(*host.ConnInfo) (host.Filter, error) {
	if h.closes.Load() != 0 {
		h.lateUse.Add(1)
	}
	h.opens.Add(1)
	return &testFilter{
		data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
			if h.closes.Load() != 0 {
				h.lateUse.Add(1)
			}
			return s.Send(dir, chunk)
		},
		closed: func() { h.filtersClosed.Add(1) },
	}, nil
}

func (h *genHook) Close() error {
	h.closes.Add(1)
	return nil
}

// TestReloadStress swaps the hook of a busy route thirty times while eight
// clients connect, talk and hang up in a loop: no client is refused, no
// hook is used after its Close, and in the end every hook has been closed
// exactly once and every filter it made has been closed.
func TestReloadStress(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		hooks := []*genHook{{inline: eng.inline}}
		var o owner
		p, _ := tn.Proxy(t, o.own(route("127.0.0.1:0", srv.Addr(), host.Link{Name: "gen", Hook: hooks[0]})))
		addr := p.Addr("r").String()

		load := testkit.StartLoad(8, func(i, n int) error {
			c, err := net.DialTimeout("tcp", addr, tn.Timeout)
			if err != nil {
				return fmt.Errorf("client %d, connection %d: %w", i, n, err)
			}
			c.SetDeadline(time.Now().Add(tn.Timeout))
			msg := fmt.Sprintf("client %d message %d", i, n)
			io.WriteString(c, msg)
			got := make([]byte, len(msg))
			_, err = io.ReadFull(c, got)
			if n%2 == 0 { // half of them hang up with a reset
				c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
			if err != nil || string(got) != msg {
				return fmt.Errorf("client %d, connection %d: %q, %v", i, n, got, err)
			}
			return nil
		})
		for range 30 {
			h := &genHook{inline: eng.inline}
			hooks = append(hooks, h)
			if err := p.Apply([]host.Route{o.own(route("127.0.0.1:0", srv.Addr(), host.Link{Name: "gen", Hook: h}))}); err != nil {
				t.Fatal(err)
			}
			load.Wait(t, 3, tn.Timeout)
		}
		for _, err := range load.Stop() {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		// Close returns within 100 ms whatever the connections do; on a
		// loaded machine one may end (and release its version) after that.
		o.waitReleased(t)
		for i, h := range hooks {
			if h.closes.Load() != 1 || h.lateUse.Load() != 0 || h.opens.Load() != h.filtersClosed.Load() {
				t.Errorf("generation %d: closed %d times, used %d times after Close, %d filters made and %d closed",
					i, h.closes.Load(), h.lateUse.Load(), h.opens.Load(), h.filtersClosed.Load())
			}
		}
	})
}

// TestApplyPortInUse: an Apply that cannot bind one of its addresses
// returns an error naming it and changes nothing.
// TestConcurrentApply: Applies from two goroutines, each moving the one
// route between two fixed ports, all succeed. The listeners an Apply
// dropped were closed after it released the proxy's lock, so the other
// Apply found their ports still bound (391 of 1000 failed with EADDRINUSE
// in an embedder's test).
//
// Not parallel: a process another test starts (go list, in
// TestNoPluginRuntimeDeps) holds a copy of every descriptor between its
// fork and its exec, a listener just closed included, and a bind in that
// window fails (it did, once in CI, on a port no kernel hands out).
func TestConcurrentApply(t *testing.T) {
	srv := tn.Serve(t, tn.Echo)
	// Two free ports below the kernel's ephemeral range (32768 and up on
	// Linux): a port from 127.0.0.1:0, once closed, may be handed to
	// another test's socket while this one moves the route away from it.
	var ports [2]string
	for i := 0; i < len(ports); {
		at := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if i == 1 && at == ports[0] {
			continue
		}
		ln, err := net.Listen("tcp", at)
		if err != nil {
			continue // another test's port
		}
		ln.Close()
		ports[i] = at
		i++
	}
	p, _ := tn.Proxy(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for g := range 2 {
		wg.Go(func() {
			for i := range 100 {
				at := ports[(i+g)%2]
				if err := p.Apply([]host.Route{{Name: "x", Listen: at, Target: srv.Addr()}}); err != nil {
					errs <- fmt.Errorf("Apply %d of goroutine %d (on %s): %w", i, g, at, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestApplyPortInUse(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	released := make(chan string, 3)
	onRelease := func(r host.Route) host.Route {
		r.OnRelease = func() { released <- r.Chain[0].Name }
		return r
	}
	p, _ := tn.Proxy(t, onRelease(route("127.0.0.1:0", srv.Addr(), host.Link{Name: "v1", Hook: newXorHook(1)})))
	addr := p.Addr("r").String()

	err = p.Apply([]host.Route{
		onRelease(route("127.0.0.1:0", srv.Addr(), host.Link{Name: "v2", Hook: newXorHook(2)})),
		{Name: "second", Listen: busy.Addr().String(), Target: srv.Addr()},
	})
	if err == nil {
		t.Fatal("Apply on a busy port succeeded")
	}
	if want := fmt.Sprintf("route %q: cannot listen on %s", "second", busy.Addr()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if a := p.Addr("second"); a != nil {
		t.Errorf("route second is listening on %s after a failed Apply", a)
	}
	if got := ask(t, tn.Dial(t, addr), "abc"); got != xorOf("abc", 1) {
		t.Errorf("after the failed Apply the route answers %q, want the old chain's %q", got, xorOf("abc", 1))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	close(released)
	var got []string
	for name := range released {
		got = append(got, name)
	}
	if len(got) != 1 || got[0] != "v1" {
		t.Errorf("OnRelease ran for %q, want only for the applied version (v1): the refused one was never the Proxy's", got)
	}
}

// TestMaxConns: at the cap a new client is not accepted (it waits in the
// backlog) until an open connection closes.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, host.Route{Name: "capped", Listen: "127.0.0.1:0", Target: srv.Addr(), MaxConns: 2})
	addr := p.Addr("capped").String()
	first, second := tn.Dial(t, addr), tn.Dial(t, addr)
	ask(t, first, "1")
	ask(t, second, "2")

	third := tn.Dial(t, addr) // completes in the kernel's backlog
	io.WriteString(third, "3")
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := third.Read(make([]byte, 1)); n != 0 || !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Fatalf("third client read %d bytes (%v) while two are open; want it to wait", n, err)
	}
	if n := srv.Accepted(); n != 2 {
		t.Fatalf("target accepted %d connections at a cap of 2", n)
	}
	first.Close()
	third.SetReadDeadline(time.Now().Add(tn.Timeout))
	got := make([]byte, 1)
	if _, err := io.ReadFull(third, got); err != nil || string(got) != "3" {
		t.Fatalf("third client after a slot freed: %q, %v", got, err)
	}
	if got := ask(t, second, "still"); got != "still" {
		t.Errorf("second client: %q", got)
	}
}

// TestMaxConnsRaisedByReload: raising a route's MaxConns with Apply lets
// a client waiting at the old cap in at once, not only when a connection
// closes.
func TestMaxConnsRaisedByReload(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	r := host.Route{Name: "capped", Listen: "127.0.0.1:0", Target: srv.Addr(), MaxConns: 1}
	p, _ := tn.Proxy(t, r)
	addr := p.Addr("capped").String()
	first := tn.Dial(t, addr)
	ask(t, first, "1")
	second := tn.Dial(t, addr) // waits in the backlog
	io.WriteString(second, "2")
	r.MaxConns = 2
	if err := p.Apply([]host.Route{r}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(second, got); err != nil || string(got) != "2" {
		t.Fatalf("second client after the cap was raised to 2: %q, %v", got, err)
	}
	if got := ask(t, first, "still"); got != "still" {
		t.Errorf("first client: %q", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestIdleTimeout: a connection quiet in both directions for the route's
// IdleTimeout is closed and logged; one that keeps talking is not.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	// 2 s, not less: the busy client below must get a turn within it
	// however loaded the machine (a stall of a second under -race with
	// the other tests was seen to let it idle out).
	p, logs := tn.Proxy(t, host.Route{Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr(), IdleTimeout: 2 * time.Second})
	addr := p.Addr("r").String()

	quiet, busy := tn.Dial(t, addr), tn.Dial(t, addr)
	// The tunnel's idle clock starts at the echo's last byte, after this
	// send: timed from here, the close can come no sooner than 2s later,
	// however late this goroutine runs after the echo.
	start := time.Now()
	ask(t, quiet, "once")
	closed := make(chan time.Duration, 1)
	go func() {
		io.ReadAll(quiet)
		closed <- time.Since(start)
	}()
	// The busy one talks every 20ms until the quiet one is closed.
	for i := 0; ; i++ {
		select {
		case d := <-closed:
			if d < 2*time.Second {
				t.Errorf("idle connection closed %v after its last bytes were sent, before its 2s timeout", d)
			}
			if got := ask(t, busy, "still here"); got != "still here" {
				t.Errorf("busy connection: %q", got)
			}
			logs.Wait(t, "connection closed", "idle for 2s")
			return
		case <-time.After(20 * time.Millisecond):
			ask(t, busy, fmt.Sprint(i))
		}
	}
}

// TestShutdownGrace: Shutdown stops accepting at once but lets open
// connections finish, and returns when the last one has.
func TestShutdownGrace(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, host.Route{Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr()})
	addr := p.Addr("r").String()
	c := tn.Dial(t, addr)
	ask(t, c, "before")

	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	// Shutdown closes the listener before it starts waiting: new clients
	// are soon refused, while the open connection goes on.
	deadline := time.Now().Add(tn.Timeout)
	for {
		c2, err := net.DialTimeout("tcp", addr, tn.Timeout)
		if err != nil {
			if strings.Contains(err.Error(), "connection refused") {
				break
			}
			// Connected in the backlog as the listener closed: reset.
			if !tn.IsClosed(err) {
				t.Fatalf("dial during Shutdown: %v, want connection refused", err)
			}
		} else {
			c2.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("Shutdown never stopped accepting")
		}
	}
	if got := ask(t, c, "during"); got != "during" {
		t.Errorf("open connection during Shutdown: %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection open", err)
	default:
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Errorf("end of the open connection: %q, %v", rest, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := p.Apply([]host.Route{route("127.0.0.1:0", srv.Addr())}); err == nil {
		t.Error("Apply after Shutdown succeeded")
	}
}

// TestShutdownDeadline: when Shutdown's context ends, the connections
// still open are closed and Shutdown returns the context's error.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, host.Route{Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr()})
	c := tn.Dial(t, p.Addr("r").String())
	ask(t, c, "idle from now on")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a 200ms deadline", d)
	}
	expectClosed(t, c)
}

// TestApplyValidates: Apply reports every problem of a configuration at
// once, each naming its route, and refuses it without binding anything.
func TestApplyValidates(t *testing.T) {
	t.Parallel()
	ok := host.ChunkFunc(func(_ *host.ConnInfo, _ host.Direction, b []byte) ([]byte, error) { return b, nil })
	routes := []host.Route{
		{Name: "", Listen: "127.0.0.1:7001", Target: "127.0.0.1:8080"},
		{Name: "a", Listen: "127.0.0.1:7002", Target: "127.0.0.1:8080"},
		{Name: "a", Listen: "127.0.0.1:7002", Target: "127.0.0.1:8080"},
		{Name: "b", Listen: "7003", Target: "127.0.0.1:8080"},
		{Name: "c", Listen: "127.0.0.1:7004", Target: "host:http"},
		{Name: "d", Listen: "127.0.0.1:7005", Target: "", DialTimeout: -time.Second, MaxConns: -5},
		{Name: "e", Listen: "127.0.0.1:7006", Target: "127.0.0.1:8080", Chain: []host.Link{
			{Name: "missing"}, {Name: "odd", Hook: ok, Directions: 7},
		}},
		{Name: "f", Listen: "127.0.0.1:0", Target: "127.0.0.1:8080"},
		{Name: "g", Listen: "127.0.0.1:0", Target: "127.0.0.1:8080"}, // ":0" twice is two ports
		{Name: "g", Listen: "127.0.0.1:0", Target: "127.0.0.1:8080"}, // a name twice is said once
		{Name: "h", Listen: "0.0.0.0:7007", Target: "127.0.0.1:7007"},
		{Name: "k", Listen: "127.0.0.1:7012", Target: "127.0.0.1:8080", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}},
		// A late dial never dials its Target: f2 and f3 do not loop.
		{Name: "f2", Listen: "127.0.0.1:7010", Target: "127.0.0.1:7011", LateDial: true, Chain: []host.Link{{Name: "router", Hook: ok}}},
		{Name: "f3", Listen: "127.0.0.1:7011", Target: "127.0.0.1:7010"},
		{Name: "i", Listen: "127.0.0.1:7008", Target: "127.0.0.1:7009"},
		{Name: "j", Listen: "127.0.0.1:7009", Target: "localhost:7008"}, // i and j forward to each other
	}
	want := []string{
		`route #1: name is empty`,
		`route "a": name used by two routes`,
		`route "b": listen: address "7003" is not host:port: address 7003: missing port in address`,
		`route "c": target: address "host:http": port "http" is not a number from 0 to 65535`,
		`route "d": target: address is empty (want host:port, e.g. 127.0.0.1:8080)`,
		`route "d": DialTimeout -1s, MaxConns -5 must not be negative`,
		`route "e": link 1 ("missing") has no hook`,
		`route "e": link 2 ("odd") has invalid directions 7`,
		`route "g": name used by two routes`,
		`route "h": target 127.0.0.1:7007 is the route's own listen address 0.0.0.0:7007: every connection would dial the tunnel itself, until no file descriptor is left`,
		`route "k": trusted proxy network #2 is not a valid prefix`,
		`routes forward to each other: "i" dials 127.0.0.1:7009 ("j"), which dials localhost:7008 ("i"); every connection would go round through the tunnel until no file descriptor is left`,
	}
	p := &host.Proxy{Logger: tn.NewLogs().Logger()}
	defer p.Close()
	err := p.Apply(routes)
	if err == nil {
		t.Fatal("Apply accepted a broken configuration")
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Apply:\n%s\nwant the validation errors:\n%s", got, strings.Join(want, "\n"))
	}
	if a := p.Addr("f"); a != nil {
		t.Errorf("route f listens on %s after a refused Apply", a)
	}
}

// TestTwoRoutesAndConnInfo: two routes of one proxy forward to their own
// targets, and the ConnInfo a hook sees names the route, the client as the
// listener saw it, the listen address and the target, with increasing ids.
func TestTwoRoutesAndConnInfo(t *testing.T) {
	t.Parallel()
	infos := make(chan host.ConnInfo, 4)
	spy := hookFunc(func(info *host.ConnInfo) (host.Filter, error) {
		return &testFilter{opened: func(s *host.Stream) error {
			if s.Info() != info {
				t.Error("Stream.Info is not the ConnInfo given to Open")
			}
			infos <- *info
			return nil
		}}, nil
	})
	greeter := func(name string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) { io.WriteString(c, name) }
	}
	a, b := tn.Serve(t, greeter("A")), tn.Serve(t, greeter("B"))
	p, _ := tn.Proxy(t,
		tn.Route("one", a.Addr(), host.Link{Name: "spy", Hook: spy}),
		tn.Route("two", b.Addr(), host.Link{Name: "spy", Hook: spy}))
	for i, tc := range []struct{ route, target, greeting string }{
		{"one", a.Addr(), "A"}, {"two", b.Addr(), "B"}, {"one", a.Addr(), "A"},
	} {
		listen := p.Addr(tc.route).String()
		c := tn.Dial(t, listen)
		if got, err := io.ReadAll(c); err != nil || string(got) != tc.greeting {
			t.Errorf("route %s: %q, %v; want %q", tc.route, got, err, tc.greeting)
		}
		info := <-infos
		want := host.ConnInfo{ID: uint64(i + 1), Route: tc.route, Target: tc.target}
		if info.ID != want.ID || info.Route != want.Route || info.Target != want.Target ||
			info.Client.String() != c.LocalAddr().String() || info.Listen.String() != listen {
			t.Errorf("connection %d: ConnInfo{ID %d, Route %q, Client %s, Listen %s, Target %q}, want {%d, %q, %s, %s, %q}",
				i+1, info.ID, info.Route, info.Client, info.Listen, info.Target,
				want.ID, want.Route, c.LocalAddr(), listen, want.Target)
		}
	}
}

// TestIdleConnectionsHoldNoBuffers: filtered connections that have
// exchanged a chunk and gone quiet hold no chunk buffer (64 KiB each way
// on the filtered path): the heap per idle connection stays small.
func TestIdleConnectionsHoldNoBuffers(t *testing.T) {
	noLeaks(t)
	const conns = 200
	srv := tn.Serve(t, tn.Echo)
	addr, _ := tunnel(t, tn.Route("test", srv.Addr(), host.Link{Name: "identity", Hook: identity}))
	clients := make([]*net.TCPConn, 0, conns)
	// Warm up: one connection's worth of pools and runtime structures.
	ask(t, tn.Dial(t, addr), "warm up")
	runtime.GC()
	runtime.GC() // twice: pooled buffers survive one collection
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range conns {
		c := tn.Dial(t, addr)
		ask(t, c, strings.Repeat("x", 40<<10)) // a full chunk each way
		clients = append(clients, c)
	}
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / conns
	t.Logf("live heap per idle filtered connection (tunnel + test server + client): %d bytes", per)
	limit := int64(16 << 10)
	if host.ReadHoldsBuffer {
		// The portable read (Windows; -tags portableread) waits holding
		// its buffer: at most one per direction.
		limit += 2 * 64 << 10
	}
	if per > limit {
		t.Errorf("each idle connection holds %d bytes of heap (want at most %d); a chunk buffer is 64 KiB", per, limit)
	}
	for _, c := range clients {
		c.Close()
	}
}
