package host

import (
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
)

// BenchmarkConnCounters is what the end of a connection costs the counters
// added for the histograms and the close reasons, as the engines call them
// (ended for the goroutine engine, loopEnded for the loop), from every
// core at once: atomic adds only, no lock, no allocation.
func BenchmarkConnCounters(b *testing.B) {
	p := &Proxy{}
	rc := p.countersLocked("bench")
	start := time.Now()
	st := evloop.Stats{Connected: true, ConnectTime: 80 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rc.ended(start, reasonClientEOF)
			rc.loopEnded(start, reasonServerEOF, st)
		}
	})
	if n := rc.duration.Snapshot().Count; n != uint64(2*b.N) {
		b.Fatalf("%d durations counted, want %d", n, 2*b.N)
	}
}

// TestConnCountersAllocs: counting a connection's end allocates nothing.
func TestConnCountersAllocs(t *testing.T) {
	p := &Proxy{}
	rc := p.countersLocked("allocs")
	start := time.Now()
	st := evloop.Stats{Connected: true, ConnectTime: time.Millisecond}
	if n := testing.AllocsPerRun(1000, func() {
		rc.ended(start, reasonRefused)
		rc.loopEnded(start, reasonIdle, st)
		rc.reject(rejectTLS)
	}); n != 0 {
		t.Fatalf("%v allocations per connection, want 0", n)
	}
	if got := rc.rejected[rejectDenied].Load(); got != 1001 {
		t.Errorf("denied = %d, want 1001 (one per refused connection)", got)
	}
}
