package wasm

import (
	"context"
	"math"
	"os"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

func TestMetricDefineRules(t *testing.T) {
	m := NewMetrics()
	def := func(kind int32, name, labels string, bounds ...float64) int32 {
		return m.define(kind, []byte(name), []byte(labels), bounds)
	}
	id := def(abi.MetricCounter, "hits_total", "cmd=GET\nkind=a=b")
	if id != 0 {
		t.Fatalf("first definition: %d", id)
	}
	for _, c := range []struct {
		name string
		got  int32
		want int32
	}{
		{"same series again", def(abi.MetricCounter, "hits_total", "cmd=GET\nkind=a=b"), 0},
		{"another label value", def(abi.MetricCounter, "hits_total", "cmd=SET\nkind=x"), 1},
		{"another kind", def(abi.MetricGauge, "hits_total", "cmd=GET\nkind=a=b"), abi.StatusAlreadySet},
		{"other label names", def(abi.MetricCounter, "hits_total", "verb=GET"), abi.StatusAlreadySet},
		{"bad name", def(abi.MetricCounter, "1x", ""), abi.StatusBadArgument},
		{"colon", def(abi.MetricCounter, "a:b", ""), abi.StatusBadArgument},
		{"reserved label", def(abi.MetricCounter, "x", "route=r"), abi.StatusBadArgument},
		{"__ label", def(abi.MetricCounter, "x", "__a=1"), abi.StatusBadArgument},
		{"duplicate label", def(abi.MetricCounter, "x", "a=1\na=2"), abi.StatusBadArgument},
		{"no =", def(abi.MetricCounter, "x", "a"), abi.StatusBadArgument},
		{"trailing newline", def(abi.MetricCounter, "x", "a=1\n"), abi.StatusBadArgument},
		{"too many labels", def(abi.MetricCounter, "x", "a=1\nb=1\nc=1\nd=1\ne=1\nf=1\ng=1\nh=1\ni=1"), abi.StatusTooLarge},
		{"unknown kind", def(3, "x", ""), abi.StatusBadArgument},
		{"counter with bounds", def(abi.MetricCounter, "x", "", 1), abi.StatusBadArgument},
		{"histogram without bounds", def(abi.MetricHistogram, "h", ""), abi.StatusBadArgument},
		{"decreasing bounds", def(abi.MetricHistogram, "h", "", 2, 1), abi.StatusBadArgument},
		{"histogram", def(abi.MetricHistogram, "h", "", 1, 2), 2},
		{"other bounds", def(abi.MetricHistogram, "h", "", 1, 3), abi.StatusAlreadySet},
		// The exporter joins a series' values with NUL: two series would
		// be one, or one lost.
		{"NUL in a value", def(abi.MetricCounter, "x", "a=b\x00c"), abi.StatusBadArgument},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	for i := 3; i < abi.MaxMetrics; i++ {
		if id := def(abi.MetricGauge, "g", "i="+string(rune('A'+i%26))+string(rune('A'+i/26))); id != int32(i) {
			t.Fatalf("series %d: %d", i, id)
		}
	}
	if st := def(abi.MetricGauge, "g", "i=overflow"); st != abi.StatusTooLarge {
		t.Fatalf("series %d: %d, want StatusTooLarge", abi.MaxMetrics+1, st)
	}
}

// TestMetricObserveFiniteOnly: NaN and ±Inf are refused and change
// nothing; an infinite value once made the histogram's sum infinite, or
// NaN, for good.
func TestMetricObserveFiniteOnly(t *testing.T) {
	m := NewMetrics()
	id := m.define(abi.MetricHistogram, []byte("h"), nil, []float64{1, 2})
	in := &Instance{shared: &Shared{Metrics: m}}
	observe := func(v float64) int32 {
		stack := []uint64{uint64(id), math.Float64bits(v)}
		hostMetricObserve(in, stack)
		return int32(stack[0])
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if st := observe(v); st != abi.StatusBadArgument {
			t.Errorf("observe(%v) = %d, want StatusBadArgument", v, st)
		}
	}
	if st := observe(1.5); st != abi.StatusOK {
		t.Fatalf("observe(1.5) = %d", st)
	}
	if v := m.Series()[0].Load(); v.Count != 1 || v.Sum != 1.5 {
		t.Errorf("after the refused values and 1.5: count %d, sum %v; want 1 and 1.5", v.Count, v.Sum)
	}
}

func TestStateBounds(t *testing.T) {
	s := NewState(4, 12)
	put := func(k, v string) int32 { return s.putLocked([]byte(k), []byte(v)) }
	if st := put("a", "12345"); st != abi.StatusTooLarge {
		t.Fatalf("5-byte value with a 4-byte bound: %d", st)
	}
	if put("a", "1234") != abi.StatusOK || put("b", "123") != abi.StatusOK { // 5 + 4 = 9
		t.Fatal("values within the bounds refused")
	}
	if st := put("c", "12"); st != abi.StatusOK { // 9 + 3 = 12: exactly the bound
		t.Fatalf("12 bytes with a 12-byte bound: %d", st)
	}
	if st := put("d", "1"); st != abi.StatusTooLarge {
		t.Fatalf("13 bytes with a 12-byte bound: %d", st)
	}
	if put("a", "") != abi.StatusOK || put("d", "1") != abi.StatusOK {
		t.Fatal("deleting did not free its bytes")
	}
	if keys, n := s.Len(); keys != 3 || n != 4+3+2 {
		t.Fatalf("Len = %d keys, %d bytes", keys, n)
	}
}

// sharedInstance instantiates v2_shared.wasm with a Shared of its own.
func sharedInstance(tb testing.TB, sh *Shared) *Instance {
	tb.Helper()
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close(ctx) })
	bin, err := os.ReadFile("../../plugin/testdata/v2_shared.wasm")
	if err != nil {
		tb.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		tb.Fatal(err)
	}
	in, err := c.Instantiate(ctx, Options{Mode: Sandboxed, MemoryLimit: 1 << 20, CallTimeout: time.Second, InitTimeout: time.Second, MaxOutput: 1 << 20, Shared: sh})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { in.Close(ctx) })
	return in
}

// sharedHost lets send through, as a connection would.
type sharedHost struct {
	NoConn
	sent []byte
}

func (h *sharedHost) Send(_ int32, b []byte) int32 {
	h.sent = append(h.sent[:0], b...)
	return abi.StatusOK
}

// Two instances of one plugin add into one value and one counter.
func TestSharedAcrossInstances(t *testing.T) {
	sh := &Shared{State: NewState(64, 1024), Metrics: NewMetrics()}
	a, b := sharedInstance(t, sh), sharedInstance(t, sh)
	h := &sharedHost{}
	for _, in := range []*Instance{a, b, a} {
		if _, err := in.OnData(h, 1, 0, make([]byte, 10), false); err != nil {
			t.Fatal(err)
		}
		if _, err := in.OnData(h, 1, 1, make([]byte, 3), false); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.sent) != 8 || h.sent[0] != 30 {
		t.Fatalf("the guest read back % x, want the sum 30", h.sent)
	}
	if _, err := b.OnData(h, 1, 1, make([]byte, 2), true); err != nil { // two observations of 5
		t.Fatal(err)
	}
	ss := sh.Metrics.Series()
	if len(ss) != 2 || ss[0].Name != "calls_total" || ss[0].Load().Value != 9 {
		t.Fatalf("series %+v", ss)
	}
	if v := ss[1].Load(); v.Count != 2 || v.Sum != 10 || v.Buckets[0] != 0 || v.Buckets[1] != 2 {
		t.Fatalf("histogram %+v", v)
	}
}

// Without a Shared (the version handshake's instance), the functions say
// StatusNotAllowed instead of failing.
func TestSharedNil(t *testing.T) {
	in := sharedInstance(t, nil)
	h := &sharedHost{}
	if _, err := in.OnData(h, 1, 0, make([]byte, 1), false); err != nil {
		t.Fatal(err)
	}
	if _, err := in.OnData(h, 1, 1, make([]byte, 1), false); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSharedHostFunc is the cost of one call of each state and metric
// host function from sandboxed guest code: a chunk of 1000 bytes makes
// v2_shared.wasm call it 1000 times, so ns/op / 1000 is the per-call cost
// (reported as ns/call). allocs/op must be 0.
func BenchmarkSharedHostFunc(b *testing.B) {
	const n = 1000
	data := make([]byte, n)
	for _, c := range []struct {
		name string
		dir  int32
		end  bool
	}{{"state_add", 0, false}, {"state_get", 0, true}, {"metric_add", 1, false}, {"metric_observe", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			sh := &Shared{State: NewState(64<<10, 1<<20), Metrics: NewMetrics()}
			in := sharedInstance(b, sh)
			h := &sharedHost{sent: make([]byte, 0, 8)}
			if _, err := in.OnData(h, 1, 0, data[:1], false); err != nil { // the key exists
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := in.OnData(h, 1, c.dir, data, c.end); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/call")
		})
	}
}

// The state and metric functions are ABI v2: a version-1 guest that
// imports one fails to load, as for the other v2 functions.
func TestSharedFunctionsAreV2(t *testing.T) {
	for name := range stateFuncs {
		if !v2Imports[name] || hostFuncs[name] == nil || hostSignatures[name].params == nil {
			t.Errorf("%s: v2 %v, registered %v, signature %v", name, v2Imports[name], hostFuncs[name] != nil, hostSignatures[name])
		}
	}
	if len(stateFuncs) != 9 {
		t.Errorf("%d state and metric functions, want 9", len(stateFuncs))
	}
}
