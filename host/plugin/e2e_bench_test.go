package plugin_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// BenchmarkWasmPingPong is request/response traffic over loopback sockets:
// one client writes 64 bytes and waits for the echo, through the tunnel with
// a pass-through Go hook (the filtered path without a plugin) and with the
// no-op WAT plugin, sandboxed and trusted, on both directions. ns/op is one
// round trip (two chunks through the plugin); cpu-ns/op is the process's CPU
// time per round trip (client, tunnel and echo server together), which a
// busy machine disturbs less than wall time.
//
//	go test -run '^$' -bench WasmPingPong ./host/plugin
func BenchmarkWasmPingPong(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close(ctx)
	for _, v := range []struct {
		name string
		hook func() host.Hook
	}{
		{"go-passthrough", func() host.Hook { return passHook{} }},
		{"wasm-sandboxed", func() host.Hook {
			p, err := rt.Load(ctx, "testdata/noop.wasm", plugin.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return p
		}},
		{"wasm-trusted", func() host.Hook {
			p, err := rt.Load(ctx, "testdata/noop.wasm", plugin.Options{Trusted: true})
			if err != nil {
				b.Fatal(err)
			}
			return p
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			p := &host.Proxy{Logger: quiet}
			defer p.Close()
			err := p.Apply([]host.Route{{Name: "r", Listen: "127.0.0.1:0", Target: ln.Addr().String(),
				Chain: []host.Link{{Name: v.name, Hook: v.hook()}}}})
			if err != nil {
				b.Fatal(err)
			}
			c, err := net.Dial("tcp", p.Addr("r").String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64)
			cpu0 := testkit.ProcessCPU()
			n := 0
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(testkit.ProcessCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}

// BenchmarkWasmBulk is one-way bulk transfer over loopback (32 KiB writes to
// a discarding server) through a pass-through Go hook and through the no-op
// plugin, sandboxed and trusted; cpu-ns/op is the process's CPU per write.
//
//	go test -run '^$' -bench WasmBulk ./host/plugin
func BenchmarkWasmBulk(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go tn.Sink(ln)
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close(ctx)
	for _, v := range []struct {
		name    string
		trusted bool
		wasm    bool
	}{{"go-passthrough", false, false}, {"wasm-sandboxed", false, true}, {"wasm-trusted", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			var hook host.Hook = passHook{}
			if v.wasm {
				p, err := rt.Load(ctx, "testdata/noop.wasm", plugin.Options{Trusted: v.trusted})
				if err != nil {
					b.Fatal(err)
				}
				hook = p
			}
			p := &host.Proxy{Logger: quiet}
			defer p.Close()
			err := p.Apply([]host.Route{{Name: "r", Listen: "127.0.0.1:0", Target: ln.Addr().String(),
				Chain: []host.Link{{Name: v.name, Hook: hook}}}})
			if err != nil {
				b.Fatal(err)
			}
			c, err := net.Dial("tcp", p.Addr("r").String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(buf)))
			cpu0 := testkit.ProcessCPU()
			n := 0
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(testkit.ProcessCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}

// passHook forwards everything: the filtered path without a plugin.
type passHook struct{}

func (passHook) Open(*host.ConnInfo) (host.Filter, error) { return host.PassThrough{}, nil }
