package histo

import (
	"sync"
	"testing"
	"time"
)

func TestObserveBuckets(t *testing.T) {
	h := New(Bounds{time.Millisecond, 10 * time.Millisecond})
	for _, d := range []time.Duration{-1, 0, time.Millisecond, time.Millisecond + 1, 10 * time.Millisecond, time.Hour} {
		h.Observe(d)
	}
	s := h.Snapshot()
	want := []uint64{3, 2, 1} // <=1ms: -1 (as 0), 0, 1ms; <=10ms: 1ms+1ns, 10ms; +Inf: 1h
	for i := range want {
		if s.Counts[i] != want[i] {
			t.Fatalf("counts = %v, want %v", s.Counts, want)
		}
	}
	if s.Count != 6 {
		t.Errorf("count = %d, want 6", s.Count)
	}
	if wantSum := 2*time.Millisecond + 1 + 10*time.Millisecond + time.Hour; s.Sum != wantSum {
		t.Errorf("sum = %v, want %v", s.Sum, wantSum)
	}
	cum := s.Cumulative()
	if cum[0.001] != 3 || cum[0.01] != 5 || len(cum) != 2 {
		t.Errorf("cumulative = %v, want map[0.001:3 0.01:5]", cum)
	}
	var total Snapshot
	total.Add(s)
	total.Add(s)
	if total.Count != 12 || total.Counts[2] != 2 || total.Sum != 2*s.Sum {
		t.Errorf("sum of two snapshots = %+v", total)
	}
}

func TestObserveConcurrent(t *testing.T) {
	h := New(ConnBounds)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10000 {
				h.Observe(time.Duration(g*i) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if s := h.Snapshot(); s.Count != 40000 {
		t.Fatalf("count = %d, want 40000", s.Count)
	}
}

func TestObserveAllocs(t *testing.T) {
	h := New(DialBounds)
	if n := testing.AllocsPerRun(1000, func() { h.Observe(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times, want 0", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	h := New(ConnBounds)
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			h.Observe(d)
			d += 37 * time.Millisecond
		}
	})
}
