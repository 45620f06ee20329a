//go:build linux

package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
)

// TestLoopsFor: one loop on one or two CPUs, then one per CPU but one, at
// most maxLoops.
func TestLoopsFor(t *testing.T) {
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
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				c.Close()
			}()
		}
	}()
	const clients, size = 32, 256 << 10
	closed := &closedCounter{want: clients, all: make(chan struct{})}
	p := &Proxy{Logger: slog.New(closed), loopCount: 2}
	defer p.Close()
	if err := p.Apply([]Route{{Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr().String(), MaxConns: 4}}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	n := len(p.loops)
	p.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d loops started, want 2", n)
	}
	addr := p.Addr("r").String()
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	want := sha256.Sum256(payload)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			go func() { c.Write(payload); c.(*net.TCPConn).CloseWrite() }()
			got, err := io.ReadAll(c)
			if err != nil || sha256.Sum256(got) != want {
				errs <- fmt.Errorf("client %d: %d bytes back, %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The last connections end on their loops after their clients saw
	// EOF: wait for every close line.
	select {
	case <-closed.all:
	case <-time.After(10 * time.Second):
		t.Fatal("not every connection was logged closed within 10 s")
	}
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

// closedCounter is a slog.Handler that closes all once it has seen want
// "connection closed" records.
type closedCounter struct {
	mu   sync.Mutex
	n    int
	want int
	all  chan struct{}
}

func (h *closedCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *closedCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *closedCounter) WithGroup(string) slog.Handler            { return h }
func (h *closedCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "connection closed" {
		h.mu.Lock()
		if h.n++; h.n == h.want {
			close(h.all)
		}
		h.mu.Unlock()
	}
	return nil
}

// TestTwoLoopsMaxConnsExact: with two loops, MaxConns still bounds the
// connections a route holds open. Clients wait in the backlog while every
// open one is held by the target; each round raises the cap by one with
// Apply, whose wake resumes both loops' sides of the listener at once: one
// more client may be let in, never two. (Admit checks open, and accepted
// counts the connection only after accept4: two loops admitting at once
// both see room for one.)
func TestTwoLoopsMaxConnsExact(t *testing.T) {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var held sync.Mutex
	var targets []net.Conn
	defer func() {
		held.Lock()
		for _, c := range targets {
			c.Close()
		}
		held.Unlock()
	}()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			held.Lock()
			targets = append(targets, c) // held open until the test ends
			held.Unlock()
		}
	}()
	const rounds = 200
	p := &Proxy{Logger: slog.New(slog.DiscardHandler), loopCount: 2}
	defer p.Close()
	r := Route{Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr().String(), MaxConns: 1}
	if err := p.Apply([]Route{r}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	var l *listener
	for _, x := range p.listeners {
		l = x
	}
	loops := p.loops
	p.mu.Unlock()
	if len(loops) != 2 {
		t.Fatalf("%d loops started, want 2", len(loops))
	}
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
		deadline := time.Now().Add(10 * time.Second)
		for l.open.Load() < int64(m) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d connections open after 10 s, want %d", m, l.open.Load(), m)
			}
			time.Sleep(time.Millisecond)
		}
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
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	p := &Proxy{Logger: slog.New(slog.DiscardHandler), loopCount: 2}
	defer p.Close()
	if err := p.Apply([]Route{{Name: "r", Listen: "127.0.0.1:0", Target: srv.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
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
		errs := make(chan error, burst)
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte("ping"))
				c.(*net.TCPConn).CloseWrite()
				if got, err := io.ReadAll(c); string(got) != "ping" || err != nil {
					errs <- fmt.Errorf("echo %q, %v", got, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		sent += 4 * burst
		deadline := time.Now().Add(10 * time.Second)
		for p.Stats()[0].Active != 0 {
			if time.Now().After(deadline) {
				t.Fatal("a connection still active 10 s after its client saw EOF")
			}
			time.Sleep(time.Millisecond)
		}
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
