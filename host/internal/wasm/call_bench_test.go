package wasm

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

func benchInstance(b *testing.B, file string, v variant) *Instance {
	b.Helper()
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		b.Fatal(err)
	}
	e.noInstrument = v == guarded
	b.Cleanup(func() { e.Close(ctx) })
	bin, err := os.ReadFile("../../plugin/testdata/" + file)
	if err != nil {
		b.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	mode := Sandboxed
	if v == plain {
		mode = Trusted
	}
	in, err := c.Instantiate(ctx, Options{Mode: mode, MemoryLimit: 1 << 20, CallTimeout: time.Second, InitTimeout: time.Second, MaxOutput: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	if in.variant != v {
		b.Fatalf("variant %d, want %d", in.variant, v)
	}
	b.Cleanup(func() { in.Close(ctx) })
	return in
}

// BenchmarkCallOverhead compares the ways of bounding a call's time, for a
// call that does nothing (tunnel_on_data with len 0):
//
//   - trusted: the module as is, no time limit at all;
//   - sandboxed: what the runtime does — the module instrumented with a fuel
//     check per loop (instrument.go) and a per-instance watchdog timer that
//     re-arms itself; no goroutine per call;
//   - guarded/watchdog: the fallback for modules the instrumentation does not
//     understand — wazero's CloseOnContextDone (a goroutine and a channel per
//     call, a check per loop iteration), with the same watchdog;
//   - guarded/ctx-timeout: CloseOnContextDone with a context.WithTimeout per
//     call (the usual way).
func BenchmarkCallOverhead(b *testing.B) {
	for _, c := range []struct {
		name string
		v    variant
	}{{"trusted", plain}, {"sandboxed", instrumented}, {"guarded/watchdog", guarded}} {
		b.Run(c.name, func(b *testing.B) {
			in := benchInstance(b, "noop.wasm", c.v)
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				if _, err := in.OnData(NoConn{}, 1, 0, nil, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("guarded/ctx-timeout", func(b *testing.B) {
		in := benchInstance(b, "noop.wasm", guarded)
		in.host = NoConn{}
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(in, time.Second)
			if err := in.onData.CallWithStack(ctx, in.stack[:]); err != nil {
				b.Fatal(err)
			}
			cancel()
			in.stack = [4]uint64{1, 0, 0, 0}
		}
	})
}

// BenchmarkLoop is a guest byte loop (XOR of a 16 KiB chunk, byte by byte)
// under each way of running code: the cost of the per-iteration checks.
func BenchmarkLoop(b *testing.B) {
	for _, c := range []struct {
		name string
		v    variant
	}{{"trusted", plain}, {"sandboxed", instrumented}, {"guarded", guarded}} {
		b.Run(c.name, func(b *testing.B) {
			in := benchInstance(b, "xor.wasm", c.v)
			chunk := make([]byte, 16<<10)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				if _, err := in.OnData(NoConn{}, 1, 0, chunk, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cpuPerOp reports the process's CPU time per op (all threads: wazero's
// per-call goroutine runs on another one), which a busy machine disturbs
// less than wall time. Use as: defer cpuPerOp(b)().
func cpuPerOp(b *testing.B) func() {
	start := testkit.ProcessCPU()
	return func() { b.ReportMetric(float64(testkit.ProcessCPU()-start)/float64(b.N), "cpu-ns/op") }
}
