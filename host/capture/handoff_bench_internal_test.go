package capture

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// BenchmarkHandoff: what it costs, in CPU time of the whole process (the
// hook's side and the writer goroutine's), to hand a small data record to
// a running Writer that writes it to io.Discard, at a pace the writer keeps
// up with (a record every few microseconds, as a loop forwarding
// request/reply traffic makes them; the pacing spin is subtracted).
// cpu-ns/rec is the figure; a writer that dropped packets fails it.
func BenchmarkHandoff(b *testing.B) {
	w, err := New(io.Discard, Options{})
	if err != nil {
		b.Fatal(err)
	}
	f := newFlow(0, netip.MustParseAddrPort("127.0.0.1:5555"), netip.MustParseAddrPort("127.0.0.1:6379"))
	chunk := make([]byte, 40)
	var next [2]uint32
	cpu0 := testkit.ProcessCPU()
	var spun time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		from := i & 1
		r := record{f: f, kind: kindData, from: uint8(from), seq: next[from], ack: next[1-from], t: time.Now(), n: len(chunk)}
		if cost := recordOverhead + int64(len(chunk)); w.reserve(cost) {
			r.buf, r.cost = w.q.getBuf(chunk), cost
		}
		next[from] += uint32(len(chunk))
		w.enqueue(r)
		n++
		t := time.Now()
		for time.Since(t) < 3*time.Microsecond {
		}
		spun += time.Since(t)
	}
	w.Sync()
	cpu := testkit.ProcessCPU() - cpu0 - spun
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/rec")
	w.Close()
	if s := w.Stats(); s.Dropped != ([2]uint64{}) {
		b.Fatalf("the writer dropped %v packets: it did not keep up, so the figure is not a hand-over's", s.Dropped)
	}
}
