package host_test

// The moments that used to hang the engine: a server that stops reading
// while the proxy shuts down or the idle timeout fires, a plugin instance
// failing while another connection waits on it, clients that half-close
// and never read, a filter that never returns. Each runs on the spliced
// path, a Go filter and a WebAssembly guest, and bounds the time teardown
// takes.

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// teardownBound is how long past its trigger (a deadline, a timeout) a
// teardown may take. Teardown waits for nothing, so this is all margin for
// a loaded machine running -race; a hang overruns it by far.
const teardownBound = 2 * time.Second

// enginePaths are the ways a direction can be forwarded.
var enginePaths = []enginePath{
	{"loop", false, func(*testing.T) []host.Link { return nil }},
	{"splice", true, func(*testing.T) []host.Link { return nil }},
	{"filtered", false, func(*testing.T) []host.Link { return []host.Link{{Name: "identity", Hook: identity}} }},
	{"wasm", false, func(t *testing.T) []host.Link {
		rt, _ := wasmRuntime(t)
		return []host.Link{{Name: "noop", Hook: wasmPlugin(t, rt, "noop", plugin.Options{})}}
	}},
}

type enginePath struct {
	name   string
	byName bool // a target by name: the goroutine engine even without a chain
	chain  func(t *testing.T) []host.Link
}

// route is a route named name toward target on this path.
func (e enginePath) route(t *testing.T, name, target string) host.Route {
	if e.byName {
		target = byName(target)
	}
	return tn.Route(name, target, e.chain(t)...)
}

// deafServer accepts and never reads; its connections are released at
// cleanup.
func deafServer(t *testing.T) *tn.Server {
	release := make(chan struct{})
	srv := tn.Serve(t, func(c *net.TCPConn) { <-release })
	t.Cleanup(func() { close(release) })
	return srv
}

// stuckWriter writes up to 50 MiB to c from a goroutine, counting what the
// kernel took, and returns once the writes have stalled (every buffer
// between the client and the deaf server is full). done delivers the
// write's error.
func stuckWriter(t *testing.T, c io.Writer) (done <-chan error) {
	t.Helper()
	var written atomic.Int64
	errc := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for range 50 << 20 / len(chunk) {
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	// No event says "the buffers are full": poll the progress until it
	// stops for a while (bounded by tn.Timeout).
	deadline := time.Now().Add(tn.Timeout)
	last, still := int64(-1), 0
	for still < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the writes never stalled (%d bytes written): is the server reading?", written.Load())
		}
		time.Sleep(40 * time.Millisecond)
		if n := written.Load(); n == last && n > 0 {
			still++
		} else {
			last, still = n, 0
		}
	}
	select {
	case err := <-errc:
		t.Fatalf("the write ended before the test began (%d bytes): %v", written.Load(), err)
	default:
	}
	return errc
}

// waitErr waits at most bound for the stuck write to fail.
func waitErr(t *testing.T, done <-chan error, bound time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("%s: the client's 50 MiB write completed: the server was not deaf", what)
		}
	case <-time.After(bound):
		t.Fatalf("%s: the client's blocked write was not failed within %s: the connection hangs", what, bound)
	}
}

// pathsAtOnce runs f as a subtest per engine path, all at the same time:
// each waits out a timer (an idle timeout, a deadline) rather than using the
// CPU, so they need not take turns for -test.parallel's slots, and the test
// takes one wait instead of four.
func pathsAtOnce(t *testing.T, f func(t *testing.T, path enginePath)) {
	var wg sync.WaitGroup
	for _, path := range enginePaths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(path.name, func(t *testing.T) { f(t, path) })
		}()
	}
	wg.Wait()
}

// TestShutdownWhileServerStopsReading: a client's write is blocked because
// the server stopped reading; Shutdown must still return by its deadline
// and close the connection.
func TestShutdownWhileServerStopsReading(t *testing.T) {
	t.Parallel()
	pathsAtOnce(t, func(t *testing.T, path enginePath) {
		srv := deafServer(t)
		logs := tn.NewLogs()
		p := &host.Proxy{Logger: logs.Logger()}
		if err := p.Apply([]host.Route{path.route(t, "r", srv.Addr())}); err != nil {
			t.Fatal(err)
		}
		c := tn.Dial(t, p.Addr("r").String())
		done := stuckWriter(t, c)

		const grace = 300 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		returned := make(chan error, 1)
		go func() { returned <- p.Shutdown(ctx) }()
		select {
		case err := <-returned:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown: %v, want the deadline's error", err)
			}
		case <-time.After(grace + teardownBound):
			t.Fatalf("Shutdown did not return %s after its %s deadline", teardownBound, grace)
		}
		t.Logf("Shutdown returned after %s", time.Since(start).Round(time.Millisecond))
		waitErr(t, done, teardownBound, "after Shutdown")
		logs.Wait(t, "connection closed", "proxy shut down")
	})
}

// TestIdleTimeoutClosesStuckConnection: a connection whose server stopped
// reading carries no bytes, so the idle timeout closes it.
func TestIdleTimeoutClosesStuckConnection(t *testing.T) {
	t.Parallel()
	pathsAtOnce(t, func(t *testing.T, path enginePath) {
		srv := deafServer(t)
		r := path.route(t, "r", srv.Addr())
		// Longer than stuckWriter needs to see the stall on a busy
		// machine: the connection must still be open when it returns.
		const idle = 2 * time.Second
		r.IdleTimeout = idle
		p, logs := tn.Proxy(t, r)
		c := tn.Dial(t, p.Addr("r").String())
		done := stuckWriter(t, c)
		waitErr(t, done, idle+teardownBound, "idle timeout")
		logs.Wait(t, "connection closed", "idle for 2s")
	})
}

// TestIdleTimeoutSparesASlowReader: the server sends 512 KiB and closes;
// the tunnel writes it into its socket toward the client within
// milliseconds and then moves nothing itself, while the client reads 4
// KiB every 20 ms (a small receive buffer: the bytes wait in the tunnel's
// socket, not the client's). Bytes move toward the client the whole
// time, so the connection is not idle: it was reset at the first idle
// check, the client's download cut short, and logged as idle with every
// byte counted as sent.
func TestIdleTimeoutSparesASlowReader(t *testing.T) {
	t.Parallel()
	// The whole payload fits the tunnel's socket toward the client (its
	// send buffer grows to 4 MiB on loopback by default; half a megabyte
	// is there within milliseconds even where tcp_wmem allows only
	// 1 MiB). 128 reads of at most 4 KiB, 20 ms apart, cannot take it in
	// less than 2.56 s, so the tunnel's own I/O stops more than half a
	// second before the end: without the kernel's view (sockq.Quiet
	// reporting nothing), the 2 s idle timeout resets every path with
	// bytes still queued.
	// A timeout of 2 s: a loaded machine's stalls of the reader (no read,
	// so nothing sent) stay well short of it.
	const read = 4 << 10
	payload := tn.Random(9, 512<<10)
	pathsAtOnce(t, func(t *testing.T, path enginePath) {
		srv := tn.Serve(t, func(c *net.TCPConn) {
			c.Write(payload)
			c.Close()
		})
		r := path.route(t, "r", srv.Addr())
		r.IdleTimeout = 2 * time.Second
		p, _ := tn.Proxy(t, r)
		d := net.Dialer{Control: testkit.ReceiveBuffer(16 << 10)}
		conn, err := d.Dial("tcp", p.Addr("r").String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		var got []byte
		buf := make([]byte, read)
		for {
			n, err := conn.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", len(got), len(payload), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if tn.Sum(got) != tn.Sum(payload) {
			t.Fatalf("%d bytes, want the %d sent (sha256 differs)", len(got), len(payload))
		}
		// Once the client has it all (and the tunnel's FIN) the connection
		// may well be idle before the client closes: not asserted.
	})
}

// TestPluginFailureClosesOthersOnItsInstance: connection A makes the only
// instance spin, connection B waits for that instance; when A's call is cut
// off, both close within the call timeout plus a margin, and the proxy
// closes at once.
func TestPluginFailureClosesOthersOnItsInstance(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	rt, rlogs := wasmRuntime(t)
	const callTimeout = 300 * time.Millisecond
	loop := wasmPlugin(t, rt, "loop", plugin.Options{Instances: 1, CallTimeout: callTimeout})
	p, logs := tn.Proxy(t, tn.Route("r", srv.Addr(), host.Link{Name: "loop", Hook: loop}))
	addr := p.Addr("r").String()
	a, b := tn.Dial(t, addr), tn.Dial(t, addr)
	// Both pinned to the one instance before A spins: on an inline route
	// the loop opens B only between A's calls.
	logs.WaitCount(t, 2, "connection opened")
	if _, err := a.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	rlogs.Wait(t, "spinning")
	start := time.Now()
	if _, err := b.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for name, c := range map[string]*net.TCPConn{"A (spinning)": a, "B (waiting)": b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(callTimeout + teardownBound))
			if n, err := io.Copy(io.Discard, c); err != nil && !tn.IsClosed(err) {
				t.Errorf("connection %s not closed within %s of the failure (%d bytes read): %v", name, callTimeout+teardownBound, n, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("both connections closed %s after B's byte", time.Since(start).Round(time.Millisecond))
	rlogs.Wait(t, "plugin failed", "policy=close", "conns=2")
	logs.WaitCount(t, 2, "connection closed")
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(teardownBound):
		t.Fatal("Proxy.Close hangs after a plugin failure")
	}
}

// TestHalfCloseThenNeverRead: clients that send, half-close and then go
// away without reading the echo are all closed by the tunnel.
func TestHalfCloseThenNeverRead(t *testing.T) {
	t.Parallel()
	for _, path := range enginePaths {
		t.Run(path.name, func(t *testing.T) {
			srv := tn.Serve(t, tn.Echo)
			p, logs := tn.Proxy(t, path.route(t, "r", srv.Addr()))
			addr := p.Addr("r").String()
			const clients = 50
			payload := tn.Random(4, 1<<20)
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", addr, tn.Timeout)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close() // unread echo: the kernel resets the connection
					c.SetDeadline(time.Now().Add(tn.Timeout))
					// The echo fills the buffers the other way and the
					// write may block for good: that is the test.
					c.Write(payload)
					c.(*net.TCPConn).CloseWrite()
				}()
			}
			wg.Wait()
			logs.WaitCount(t, clients, "connection closed")
		})
	}
}

// blockingHook's filters block in Data until released, like a guest that
// cannot be interrupted.
type blockingHook struct {
	entered chan struct{}
	release chan struct{}
}

func (h *blockingHook) Open(*host.ConnInfo) (host.Filter, error) { return blockingFilter{h}, nil }

type blockingFilter struct{ h *blockingHook }

func (f blockingFilter) Opened(*host.Stream) error { return nil }
func (f blockingFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	f.h.entered <- struct{}{}
	<-f.h.release
	return s.Send(dir, b)
}
func (f blockingFilter) End(host.Direction, *host.Stream) error { return nil }
func (f blockingFilter) Closed()                                {}

// TestShutdownAbandonsBlockedFilter: Shutdown returns by its deadline even
// while a filter call never returns; the connection is abandoned, and
// finishes once the call returns.
func TestShutdownAbandonsBlockedFilter(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	h := &blockingHook{entered: make(chan struct{}, 1), release: make(chan struct{})}
	logs := tn.NewLogs()
	p := &host.Proxy{Logger: logs.Logger()}
	if err := p.Apply([]host.Route{tn.Route("r", srv.Addr(), host.Link{Name: "blocking", Hook: h})}); err != nil {
		t.Fatal(err)
	}
	c := tn.Dial(t, p.Addr("r").String())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	<-h.entered
	const grace = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	returned := make(chan struct{})
	go func() { p.Shutdown(ctx); close(returned) }()
	select {
	case <-returned:
	case <-time.After(grace + teardownBound):
		close(h.release)
		t.Fatalf("Shutdown did not return %s after its deadline while a filter call was blocked", teardownBound)
	}
	logs.Wait(t, "connections abandoned inside a filter call", "conns=1")
	expectClosed(t, c) // the sockets are closed even though the filter still runs
	close(h.release)
	logs.Wait(t, "connection closed", "proxy shut down")
}

// TestShutdownNothingOpen: a Shutdown whose context has already ended (a
// grace of 0) with no connection open has nothing to cut short, so it
// returns nil; it once raced its own bookkeeping and reported the
// deadline, and the CLI logged "grace period over; closed the remaining
// connections" with none open.
func TestShutdownNothingOpen(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	for range 20 {
		p, _ := tn.Proxy(t, tn.Route("r", srv.Addr()))
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		err := p.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Shutdown with nothing open: %v", err)
		}
	}
}

// TestShutdownEndsSocketsWhileFilterBlocks: Shutdown's deadline passes
// while a filter call blocks (a guest running to its time limit, a Go
// filter that waits). The client sees its connection end then, on both
// engines: on an event loop the abort used to wait on the loop, busy in
// the call, so the sockets stayed open until it returned.
func TestShutdownEndsSocketsWhileFilterBlocks(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		h := &blockingHook{entered: make(chan struct{}, 1), release: make(chan struct{})}
		defer close(h.release) // after the check: the call returns, the connection finishes
		r := tn.Route("r", srv.Addr(), host.Link{Name: "blocking", Hook: h})
		r.Chain = eng.links(r.Chain)
		p := &host.Proxy{Logger: tn.NewLogs().Logger()}
		if err := p.Apply([]host.Route{r}); err != nil {
			t.Fatal(err)
		}
		c := tn.Dial(t, p.Addr("r").String())
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		<-h.entered
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		go p.Shutdown(ctx)
		// While the filter still blocks, the client's connection is reset
		// (the stream was cut: a FIN would pass it for a whole one);
		// before, it waited for the release below. On an event loop the
		// reset is sent from outside the loop, busy in the call.
		c.SetReadDeadline(time.Now().Add(tn.Timeout))
		if _, err := c.Read(make([]byte, 1)); !tn.IsReset(err) {
			t.Fatalf("client read while the filter call blocks: %v; want a reset", err)
		}
	})
}

// streamHook's filters hand their Stream to the test, then block in Data
// until released.
type streamHook struct {
	streams chan *host.Stream
	release chan struct{}
}

func (h *streamHook) Open(*host.ConnInfo) (host.Filter, error) { return streamFilter{h}, nil }

type streamFilter struct{ h *streamHook }

func (f streamFilter) Opened(*host.Stream) error { return nil }
func (f streamFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	f.h.streams <- s
	<-f.h.release
	return s.Send(dir, b)
}
func (f streamFilter) End(host.Direction, *host.Stream) error { return nil }
func (f streamFilter) Closed()                                {}

// TestAbortEndsSocketsWhileFilterBlocks: Stream.Abort, from another
// goroutine while the connection's filter call blocks, ends the client's
// connection then, on both engines (on an event loop it used to wait for
// the call to return).
func TestAbortEndsSocketsWhileFilterBlocks(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		h := &streamHook{streams: make(chan *host.Stream, 1), release: make(chan struct{})}
		release := sync.OnceFunc(func() { close(h.release) })
		defer release()
		addr, logs := eng.tunnel(t, tn.Route("r", srv.Addr(), host.Link{Name: "blocking", Hook: h}))
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		(<-h.streams).Abort(errors.New("aborted by the test"))
		c.SetReadDeadline(time.Now().Add(tn.Timeout))
		if _, err := c.Read(make([]byte, 1)); !tn.IsReset(err) {
			t.Fatalf("client read while the filter call blocks: %v; want a reset", err)
		}
		release()
		logs.Wait(t, "connection closed", "aborted by the test")
	})
}
