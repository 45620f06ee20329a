package wasm

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
)

func noopInstance(b *testing.B, mode Mode) *Instance {
	b.Helper()
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(ctx) })
	bin, err := os.ReadFile("../../testdata/noop.wasm")
	if err != nil {
		b.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	in, err := c.Instantiate(ctx, Options{Mode: mode, MemoryLimit: 1 << 20, CallTimeout: time.Second, InitTimeout: time.Second, MaxOutput: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	return in
}

type nopHost struct{ NoConn }

// BenchmarkCallOverhead compares the ways of bounding a call's time, for a
// call that does nothing (tunnel_on_data with len 0):
//
//   - trusted: compiled without CloseOnContextDone, no time limit at all;
//   - sandboxed/watchdog: what the runtime does — the instance is the
//     context (Done is a channel closed only on timeout), and a per-instance
//     time.AfterFunc timer is Reset before and stopped after each call;
//   - sandboxed/no-timer: the same without the timer (wazero's own cost of
//     CloseOnContextDone: a goroutine and a channel per call);
//   - sandboxed/ctx-timeout: a context.WithTimeout per call (the usual way).
func BenchmarkCallOverhead(b *testing.B) {
	b.Run("trusted", func(b *testing.B) {
		in := noopInstance(b, Trusted)
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			if _, err := in.OnData(nopHost{}, 1, 0, nil, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sandboxed/watchdog", func(b *testing.B) {
		in := noopInstance(b, Sandboxed)
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			if _, err := in.OnData(nopHost{}, 1, 0, nil, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sandboxed/no-timer", func(b *testing.B) {
		in := noopInstance(b, Sandboxed)
		in.host = nopHost{}
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			if err := in.onData.CallWithStack(in, in.stack[:]); err != nil {
				b.Fatal(err)
			}
			in.stack = [4]uint64{1, 0, 0, 0}
		}
	})
	b.Run("sandboxed/ctx-timeout", func(b *testing.B) {
		in := noopInstance(b, Sandboxed)
		in.host = nopHost{}
		var fn api.Function = in.onData
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(in, time.Second)
			if err := fn.CallWithStack(ctx, in.stack[:]); err != nil {
				b.Fatal(err)
			}
			cancel()
			in.stack = [4]uint64{1, 0, 0, 0}
		}
	})
}

// cpuPerOp reports the process's CPU time per op (all threads: wazero's
// per-call goroutine runs on another one), which a busy machine disturbs
// less than wall time. Use as: defer cpuPerOp(b)().
func cpuPerOp(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
