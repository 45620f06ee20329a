package plugin_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
)

// harness runs code inside a filter callback of a real connection, so that
// a plugin's filters can be driven chunk by chunk with a real *host.Stream
// and no socket in the loop. The route's chain is [driver, drop]: on the
// first chunk from its client, the driver runs the next job with its own
// Stream, and drop drops what reaches it, so what a filter driven
// through that Stream sends on goes nowhere. Only host's public API is
// used: the per-chunk cost measured includes one Go filter call (drop).
type harness struct {
	addr string
	jobs chan *job
}

type job struct {
	fn   func(s *host.Stream)
	done chan struct{}
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	srv := tn.Serve(tb, tn.Echo)
	h := &harness{jobs: make(chan *job, 64)}
	p, _ := tn.Proxy(tb, tn.Route("bench", srv.Addr(),
		host.Link{Name: "driver", Hook: driver{h}}, host.Link{Name: "sink", Hook: drop{}}))
	h.addr = p.Addr("bench").String()
	return h
}

// run runs fn inside a callback of a new connection and returns once it
// has. fn runs on the connection's goroutine: it reports with tb.Error,
// never tb.Fatal. run may be called from any goroutine.
func (h *harness) run(tb testing.TB, fn func(s *host.Stream)) {
	j := &job{fn: fn, done: make(chan struct{})}
	h.jobs <- j
	c, err := net.DialTimeout("tcp", h.addr, tn.Timeout)
	if err != nil {
		tb.Error(err)
		<-h.jobs
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		tb.Error(err)
	}
	<-j.done
}

type driver struct{ h *harness }

func (d driver) Open(*host.ConnInfo) (host.Filter, error) { return d, nil }
func (driver) Opened(*host.Stream) error                  { return nil }
func (driver) End(host.Direction, *host.Stream) error     { return nil }
func (driver) Closed()                                    {}

func (d driver) Data(dir host.Direction, _ []byte, s *host.Stream) error {
	if dir == host.ClientToServer {
		j := <-d.h.jobs
		j.fn(s)
		close(j.done)
	}
	return nil
}

type drop struct{ host.PassThrough }

func (drop) Open(*host.ConnInfo) (host.Filter, error)        { return drop{}, nil }
func (drop) Data(host.Direction, []byte, *host.Stream) error { return nil }
func (drop) End(host.Direction, *host.Stream) error          { return nil }

// open opens a filter of p for a connection numbered id, as the Proxy does
// (Open, then Opened), on s.
func open(tb testing.TB, p *plugin.Plugin, s *host.Stream, id uint64) host.Filter {
	info := *s.Info()
	info.ID = id
	f, err := p.Open(&info)
	if err != nil {
		tb.Error(err)
		return nil
	}
	if err := f.Opened(s); err != nil {
		tb.Error(err)
		return nil
	}
	return f
}

func benchPlugin(b *testing.B, file string, opts plugin.Options) *plugin.Plugin {
	b.Helper()
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	p, err := rt.Load(ctx, "testdata/"+file, opts)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// chunks runs b.N times the chunks through one filter of p.
func (h *harness) chunks(b *testing.B, p *plugin.Plugin, chunks ...[]byte) {
	h.run(b, func(s *host.Stream) {
		f := open(b, p, s, 1)
		if f == nil {
			return
		}
		defer f.Closed()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for _, c := range chunks {
				if err := f.Data(host.ClientToServer, c, s); err != nil {
					b.Error(err)
					return
				}
			}
		}
		b.StopTimer()
	})
}

// BenchmarkWasmNoopChunk is the cost per chunk of a no-op WAT plugin: copy
// into guest memory, the call, and forwarding the chunk (to a Go filter
// that drops it; no socket). Sandboxed is the default (instrumented,
// interruptible calls); trusted opts out of the time limit.
func BenchmarkWasmNoopChunk(b *testing.B) {
	h := newHarness(b)
	for _, mode := range []string{"sandboxed", "trusted"} {
		p := benchPlugin(b, "noop.wasm", plugin.Options{Trusted: mode == "trusted"})
		for _, size := range []int{64, 1 << 10, 16 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				h.chunks(b, p, make([]byte, size))
			})
		}
	}
}

// BenchmarkWasmRewriteChunk is a guest that sends its own bytes for every
// chunk (the rewrite path: queue, deliver after the call).
func BenchmarkWasmRewriteChunk(b *testing.B) {
	h := newHarness(b)
	p := benchPlugin(b, "crash.wasm", plugin.Options{})
	for _, size := range []int{64, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			h.chunks(b, p, make([]byte, size))
		})
	}
}

// BenchmarkWasmHoldChunk alternates a chunk the guest holds and one that
// completes its line (testdata/hold.wat): the HOLD path, in steady state.
func BenchmarkWasmHoldChunk(b *testing.B) {
	h := newHarness(b)
	p := benchPlugin(b, "hold.wasm", plugin.Options{})
	h.chunks(b, p, []byte("hello "), []byte("world\n"))
}

// BenchmarkWasmPool runs 16 KiB chunks of connections in parallel (one per
// benchmark goroutine, -cpu sets how many) through a loop-heavy guest
// (testdata/xor.wat) over pools of 1, 2 and 4 instances: the instance lock is
// the contention point.
func BenchmarkWasmPool(b *testing.B) {
	h := newHarness(b)
	for _, cfg := range []struct {
		mode string
		n    int
	}{{"sandboxed", 1}, {"sandboxed", 2}, {"sandboxed", 4}, {"trusted", 1}, {"trusted", 2}, {"trusted", 4}} {
		p := benchPlugin(b, "xor.wasm", plugin.Options{Instances: cfg.n, Trusted: cfg.mode == "trusted"})
		b.Run(fmt.Sprintf("%s/instances=%d", cfg.mode, cfg.n), func(b *testing.B) {
			chunk := make([]byte, 16<<10)
			b.SetBytes(int64(len(chunk)))
			b.RunParallel(func(pb *testing.PB) {
				h.run(b, func(s *host.Stream) {
					f := open(b, p, s, s.Info().ID)
					if f == nil {
						return
					}
					defer f.Closed()
					for pb.Next() {
						if err := f.Data(host.ClientToServer, chunk, s); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkWasmOpen is the host-side cost of one connection through a
// plugin: Open (pinning), Opened and Closed, with a pool of 2 instances.
// bytes/op is what a connection costs (a ConnInfo copy included); the guest
// memory is per instance.
func BenchmarkWasmOpen(b *testing.B) {
	h := newHarness(b)
	p := benchPlugin(b, "crash.wasm", plugin.Options{Instances: 2})
	h.run(b, func(s *host.Stream) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			f := open(b, p, s, uint64(i+1))
			if f == nil {
				return
			}
			f.Closed()
		}
		b.StopTimer()
	})
}

// TestWasmMemoryPerConnection holds 10,000 connections open on a plugin with
// a pool of 2 instances and checks the pool does not grow and the host-side
// heap per connection stays small. (No sockets: 10,000 filters driven
// through the Stream of one connection.)
func TestWasmMemoryPerConnection(t *testing.T) {
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	p, err := rt.Load(ctx, "testdata/crash.wasm", plugin.Options{Instances: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := newHarness(t)
	const n = 10000
	h.run(t, func(s *host.Stream) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		filters := make([]host.Filter, 0, n)
		chunk := []byte("hello")
		for i := range n {
			f := open(t, p, s, uint64(i+1))
			if f == nil {
				return
			}
			filters = append(filters, f)
			if err := f.Data(host.ClientToServer, chunk, s); err != nil {
				t.Error(err)
				return
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perConn := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
		instances := plugstats.Instances(p)
		t.Logf("%d connections: %d instances, host heap %d bytes per connection (test scaffolding included)", n, instances, perConn)
		if instances != 2 {
			t.Errorf("%d instances for %d connections, want 2", instances, n)
		}
		if perConn > 4096 {
			t.Errorf("host heap per connection %d bytes, want < 4 KiB", perConn)
		}
		for _, f := range filters {
			f.Closed()
		}
	})
}
