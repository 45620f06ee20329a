//go:build linux

package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestLoopsFor: one loop on one or two CPUs, then one per CPU but one, at
// most maxLoops.
func TestLoopsFor(t *testing.T) {
	t.Parallel()
	for procs, want := range map[int]int{1: 1, 2: 1, 3: 2, 4: 3, 9: 8, 64: maxLoops} {
		if got := loopsFor(procs); got != want {
			t.Errorf("loopsFor(%d) = %d, want %d", procs, got, want)
		}
	}
}

// TestTwoLoops: plain routes served by two loops, as on a machine with
// three CPUs or more (this one may have two): every connection is
// forwarded byte for byte by one of them, a connection cap pauses and
// resumes both loops' sides of the listener, the statistics add up each
// loop's finished connections exactly, and Shutdown ends them all.
func TestTwoLoops(t *testing.T) {
	t.Parallel()
	const clients, size = 32, 256 << 10
	p, ev := twoLoops(t, Route{Name: "r", Listen: "127.0.0.1:0", Target: echoServer(t), MaxConns: 4})
	addr := p.Addr("r").String()
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for _, err := range echoClients(addr, clients, payload) {
		t.Error(err)
	}
	// The last connections end on their loops after their clients saw
	// EOF: wait for every close line.
	ev.wait(t, ev.closed, clients, "connections closed")
	s := p.Stats()[0]
	total := int64(clients * size)
	if s.Accepted != clients || s.Active != 0 || s.BytesFromClient != total || s.BytesToServer != total || s.BytesFromServer != total || s.BytesToClient != total {
		t.Errorf("stats %+v, want %d accepted, none active, %d bytes each way", s, clients, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// echoClients has n clients at once send payload to addr, half-close and
// read the echo back, and returns what went wrong.
func echoClients(addr string, n int, payload []byte) []error {
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			go func() { c.Write(payload); c.(*net.TCPConn).CloseWrite() }()
			if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, payload) {
				errs <- fmt.Errorf("client %d: %d of %d bytes back, %v", i, len(got), len(payload), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return all
}

// twoLoops starts a Proxy serving routes on two loops, closed when the
// test ends, and returns it with the events of its log.
func twoLoops(t *testing.T, routes ...Route) (*Proxy, *logEvents) {
	t.Helper()
	ev := &logEvents{opened: make(chan struct{}, 4096), closed: make(chan struct{}, 4096)}
	p := &Proxy{Logger: slog.New(ev), loopCount: 2}
	if err := p.Apply(routes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.mu.Lock()
	n := len(p.loops)
	p.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d loops started, want 2", n)
	}
	return p, ev
}

// logEvents is a slog.Handler that puts a token in opened for every
// "connection opened" record (a debug one, logged when a loop has taken
// the connection's slot) and in closed for every "connection closed"
// (logged once the connection's bytes are counted).
type logEvents struct{ opened, closed chan struct{} }

func (h *logEvents) Enabled(context.Context, slog.Level) bool { return true }
func (h *logEvents) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logEvents) WithGroup(string) slog.Handler            { return h }
func (h *logEvents) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "connection opened":
		h.opened <- struct{}{}
	case "connection closed":
		h.closed <- struct{}{}
	}
	return nil
}

// wait takes n tokens from ch, each within 10 s.
func (h *logEvents) wait(t *testing.T, ch chan struct{}, n int, what string) {
	t.Helper()
	for i := range n {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d %s, then none for 10 s", i, n, what)
		}
	}
}

// TestTwoLoopsMaxConnsExact: with two loops, MaxConns still bounds the
// connections a route holds open. Clients wait in the backlog while every
// open one is held by the target; each round raises the cap by one with
// Apply, whose wake resumes both loops' sides of the listener at once: one
// more client may be let in, never two. (Admit checks open, and accepted
// counts the connection only after accept4: two loops admitting at once
// both see room for one.)
func TestTwoLoopsMaxConnsExact(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	target := serve(t, func(net.Conn) { <-release }) // held open until the test ends
	t.Cleanup(func() { close(release) })
	// Each round waits on both loops' turns, and under -race beside the
	// package's other parallel tests a round took 60 ms (12.6 s for 200;
	// 0.4 s alone): the race build checks the memory accesses, this test's
	// rounds hunt a logical race, which the plain run's 200 do.
	rounds := 200
	if testkit.Race {
		rounds = 40
	}
	r := Route{Name: "r", Listen: "127.0.0.1:0", Target: target, MaxConns: 1}
	p, ev := twoLoops(t, r)
	p.mu.Lock()
	var l *listener
	for _, x := range p.listeners {
		l = x
	}
	p.mu.Unlock()
	addr := p.Addr("r").String()
	for range rounds + 4 { // all but the first wait in the backlog
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// barrier: each loop has finished the turn it was in.
	barrier := func() {
		p.eachLoopConnStats(func(ConnStats) {})
	}
	for m := 1; m <= rounds; m++ {
		if m > 1 {
			r.MaxConns = m
			if err := p.Apply([]Route{r}); err != nil {
				t.Fatal(err)
			}
		}
		ev.wait(t, ev.opened, 1, fmt.Sprintf("connections let in at round %d", m))
		barrier()
		barrier()
		if n := l.open.Load(); n > int64(m) {
			t.Errorf("round %d: %d connections open, over MaxConns %d", m, n, m)
			return
		}
	}
}

// TestTwoLoopsStatsLoopStopped: the bytes of a loop's finished
// connections stay in Stats once that loop has stopped while the Proxy
// still lists it: as a Stats sees it when Shutdown's closeLoop stops the
// loops between its loopsNow and that loop's Each, or for good when a loop
// ends on an epoll_wait error. (Each on a stopped loop runs nothing, not
// even start, so that loop's loopBytes were left out.)
func TestTwoLoopsStatsLoopStopped(t *testing.T) {
	t.Parallel()
	p, ev := twoLoops(t, Route{Name: "r", Listen: "127.0.0.1:0", Target: echoServer(t)})
	p.mu.Lock()
	loops := p.loops
	rc := p.countersLocked("r")
	p.mu.Unlock()
	addr := p.Addr("r").String()
	// Bursts of concurrent connections until loop 1 has forwarded some
	// (the kernel wakes loop 0 when it waits, loop 1 when loop 0 is busy),
	// each burst finished on its loops before the next.
	const burst = 16
	var sent, onLoop1 int64
	for n := 0; onLoop1 == 0; n++ {
		if n == 100 {
			t.Fatal("100 bursts of connections, none forwarded by loop 1")
		}
		if errs := echoClients(addr, burst, []byte("ping")); len(errs) > 0 {
			t.Fatal(errs[0])
		}
		sent += 4 * burst
		ev.wait(t, ev.closed, burst, "connections of the burst closed")
		loops[1].Each(func() { onLoop1 = rc.loopBytes[1].read[ClientToServer] }, func(any, evloop.Stats) {})
	}
	if got := p.Stats()[0].BytesFromClient; got != sent {
		t.Fatalf("%d bytes from clients, want %d", got, sent)
	}
	loops[1].Close()
	if got := p.Stats()[0].BytesFromClient; got != sent {
		t.Errorf("with loop 1 stopped, Stats counts %d bytes from clients, want %d (loop 1 forwarded %d)", got, sent, onLoop1)
	}
}

// TestTwoLoopsShutdownWhileServerStopsReading: teardown while writes are
// blocked, with two loops: clients pour bytes into a target that never
// reads, so their connections' writes toward it cannot proceed (on
// whichever loop the kernel handed each to). Shutdown with a short grace
// aborts them all and returns within its deadline (plus the abort), and
// every client's write ends.
func TestTwoLoopsShutdownWhileServerStopsReading(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	target := serve(t, func(net.Conn) { <-release }) // accepts, never reads
	t.Cleanup(func() { close(release) })
	p, ev := twoLoops(t, Route{Name: "r", Listen: "127.0.0.1:0", Target: target})
	const clients = 8
	chunk := make([]byte, 64<<10)
	ended := make(chan error, clients)
	for range clients {
		c, err := net.DialTimeout("tcp", p.Addr("r").String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			for {
				if _, err := c.Write(chunk); err != nil {
					ended <- err
					return
				}
			}
		}()
	}
	ev.wait(t, ev.opened, clients, "connections opened")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	p.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a grace of 200ms", d)
	}
	for i := range clients {
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d clients' writes still blocked 10 s after Shutdown", clients-i, clients)
		}
	}
}
