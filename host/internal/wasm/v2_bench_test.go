package wasm

import (
	"testing"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// v2Host answers the v2 functions as a connection would, without a tunnel:
// what the benchmarks measure is the crossing and the argument checks.
type v2Host struct {
	NoConn
	tag string
}

func (h *v2Host) SetTimer(uint64, int64) int32 { return abi.StatusOK }
func (h *v2Host) SetTag(_ uint64, k, v []byte) int32 {
	if h.tag != string(v) {
		h.tag = string(v)
	}
	return abi.StatusOK
}
func (h *v2Host) Tag(uint64, []byte) (string, int32) { return h.tag, abi.StatusOK }

// BenchmarkV2HostFunc is the cost of one call of each ABI v2 host function
// from sandboxed guest code: a chunk of 1000 bytes makes the guest call it
// 1000 times, so ns/op / 1000 is the per-call cost (reported as ns/call).
func BenchmarkV2HostFunc(b *testing.B) {
	const n = 1000
	data := make([]byte, n)
	for _, c := range []struct {
		name string
		dir  int32
		end  bool
	}{{"now", 0, false}, {"get_tag", 1, false}, {"set_timer", 0, true}, {"set_tag", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			in := benchInstance(b, "v2_bench.wasm", instrumented)
			h := &v2Host{tag: "v"}
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
