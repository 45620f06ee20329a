package host

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"testing"
)

// benchConn is a connection with no sockets: a chain of one link on both
// directions whose output lands in the pending buffers, emptied per chunk.
func benchConn(h Hook, id uint64) (*conn, Filter, error) {
	rs := newRouteState(Route{Name: "bench", Target: "127.0.0.1:1", Chain: []Link{{Name: "p", Hook: h}}})
	c := &conn{rs: rs}
	c.td.closed = make(chan struct{})
	c.ch.c = c
	c.ch.dialled = true
	c.info = ConnInfo{ID: id, Route: "bench", Target: rs.Target,
		Client: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Listen: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}}
	f, err := h.Open(&c.info)
	if err != nil {
		return nil, nil, err
	}
	c.ch.filters = []Filter{f}
	c.ch.streams = []Stream{{c: c, idx: 0}}
	if err := f.Opened(&c.ch.streams[0]); err != nil {
		return nil, nil, err
	}
	return c, f, nil
}

func benchPlugin(b *testing.B, file string, opts PluginOptions) *Plugin {
	b.Helper()
	ctx := context.Background()
	rt, err := NewRuntime(ctx, RuntimeOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	bin, err := os.ReadFile("testdata/" + file)
	if err != nil {
		b.Fatal(err)
	}
	m, err := rt.Compile(ctx, file, bin)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	p, err := m.Hook(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// chunk runs one chunk through the filter, as the pump does.
func (c *conn) benchChunk(f Filter, dir Direction, chunk []byte) error {
	c.ch.mu.Lock()
	err := f.Data(dir, chunk, &c.ch.streams[0])
	if pb := c.ch.pend[dir]; pb != nil {
		*pb = (*pb)[:0] // as if written; the buffer stays for the next chunk
	}
	c.ch.mu.Unlock()
	return err
}

// BenchmarkWasmNoopChunk is the cost per chunk of a no-op WAT plugin: copy
// into guest memory, the call, and forwarding the chunk (into the pending
// buffer; no socket). Sandboxed is the default (instrumented, interruptible
// calls); trusted opts out of the time limit.
func BenchmarkWasmNoopChunk(b *testing.B) {
	for _, mode := range []string{"sandboxed", "trusted"} {
		for _, size := range []int{64, 1 << 10, 16 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				p := benchPlugin(b, "noop.wasm", PluginOptions{Trusted: mode == "trusted"})
				c, f, err := benchConn(p, 1)
				if err != nil {
					b.Fatal(err)
				}
				chunk := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.benchChunk(f, ClientToServer, chunk); err != nil {
						b.Fatal(err)
					}
				}
				f.Closed()
			})
		}
	}
}

// BenchmarkWasmRewriteChunk is a guest that sends its own bytes for every
// chunk (the rewrite path: queue, deliver after the call).
func BenchmarkWasmRewriteChunk(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			p := benchPlugin(b, "crash.wasm", PluginOptions{})
			c, f, err := benchConn(p, 1)
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.benchChunk(f, ClientToServer, chunk); err != nil {
					b.Fatal(err)
				}
			}
			f.Closed()
		})
	}
}

// BenchmarkWasmPool runs 16 KiB chunks of connections in parallel (one per
// benchmark goroutine, -cpu sets how many) through a loop-heavy guest
// (testdata/xor.wat) over pools of 1, 2 and 4 instances: the instance lock is
// the contention point.
func BenchmarkWasmPool(b *testing.B) {
	for _, cfg := range []struct {
		mode string
		n    int
	}{{"sandboxed", 1}, {"sandboxed", 2}, {"sandboxed", 4}, {"trusted", 1}, {"trusted", 2}, {"trusted", 4}} {
		n := cfg.n
		b.Run(fmt.Sprintf("%s/instances=%d", cfg.mode, n), func(b *testing.B) {
			p := benchPlugin(b, "xor.wasm", PluginOptions{Instances: n, Trusted: cfg.mode == "trusted"})
			var id uint64
			var mu = make(chan struct{}, 1)
			mu <- struct{}{}
			chunk := make([]byte, 16<<10)
			b.SetBytes(int64(len(chunk)))
			b.RunParallel(func(pb *testing.PB) {
				<-mu
				id++
				myID := id
				mu <- struct{}{}
				c, f, err := benchConn(p, myID)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if err := c.benchChunk(f, ClientToServer, chunk); err != nil {
						b.Error(err)
						return
					}
				}
				f.Closed()
			})
		})
	}
}

// BenchmarkWasmOpen is the host-side cost of one connection through a
// plugin: Open (pinning), Opened and Closed, with a pool of 2 instances.
// bytes/op is what a connection costs; the guest memory is per instance.
func BenchmarkWasmOpen(b *testing.B) {
	p := benchPlugin(b, "crash.wasm", PluginOptions{Instances: 2})
	b.ReportAllocs()
	var id uint64
	for b.Loop() {
		id++
		_, f, err := benchConn(p, id)
		if err != nil {
			b.Fatal(err)
		}
		f.Closed()
	}
}

// TestWasmMemoryPerConnection holds 10,000 connections open on a plugin with
// a pool of 2 instances and checks the pool does not grow and the host-side
// heap per connection stays small. (No sockets: the Filter API directly.)
func TestWasmMemoryPerConnection(t *testing.T) {
	ctx := context.Background()
	rt, err := NewRuntime(ctx, RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	bin, err := os.ReadFile("testdata/crash.wasm")
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.Compile(ctx, "crash", bin)
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.Hook(ctx, PluginOptions{Instances: 2})
	m.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	filters := make([]Filter, 0, n)
	conns := make([]*conn, 0, n)
	chunk := []byte("hello")
	for i := range n {
		c, f, err := benchConn(p, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.benchChunk(f, ClientToServer, chunk); err != nil {
			t.Fatal(err)
		}
		putBuf(c.ch.pend[ClientToServer]) // written: an idle connection holds no buffer
		c.ch.pend[ClientToServer] = nil
		filters = append(filters, f)
		conns = append(conns, c)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perConn := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d connections: %d instances, host heap %d bytes per connection (test scaffolding included)", n, p.Instances(), perConn)
	if p.Instances() != 2 {
		t.Errorf("%d instances for %d connections, want 2", p.Instances(), n)
	}
	if perConn > 4096 {
		t.Errorf("host heap per connection %d bytes, want < 4 KiB", perConn)
	}
	for _, f := range filters {
		f.Closed()
	}
	runtime.KeepAlive(conns)
	p.Close()
}

// BenchmarkWasmHoldChunk alternates a chunk the guest holds and one that
// completes its line (testdata/hold.wat): the HOLD path, in steady state.
func BenchmarkWasmHoldChunk(b *testing.B) {
	p := benchPlugin(b, "hold.wasm", PluginOptions{})
	c, f, err := benchConn(p, 1)
	if err != nil {
		b.Fatal(err)
	}
	first, second := []byte("hello "), []byte("world\n")
	b.ReportAllocs()
	for b.Loop() {
		if err := c.benchChunk(f, ClientToServer, first); err != nil {
			b.Fatal(err)
		}
		if err := c.benchChunk(f, ClientToServer, second); err != nil {
			b.Fatal(err)
		}
	}
	f.Closed()
}
