// Package histo is a duration histogram cheap enough to update on every
// connection and every plugin call: fixed bucket bounds, one atomic add for
// the bucket and one for the sum, no lock and no allocation. Readers take a
// [Snapshot] at any time (the admin endpoint, at scrape time).
package histo

import (
	"sync/atomic"
	"time"
)

// Bounds are the upper bounds of a histogram's buckets, ascending; a last,
// unbounded bucket (+Inf) follows them.
type Bounds []time.Duration

// ConnBounds suit connection lifetimes: a millisecond to an hour.
var ConnBounds = Bounds{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 500 * time.Millisecond, time.Second, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour,
}

// DialBounds suit TCP connects: 50 µs (loopback) to 10 s (the default dial
// timeout).
var DialBounds = Bounds{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// CallBounds suit plugin calls: a microsecond (a trivial guest) to a second
// (the default call timeout).
var CallBounds = Bounds{
	time.Microsecond, 2500 * time.Nanosecond, 5 * time.Microsecond, 10 * time.Microsecond,
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// Histogram counts durations into buckets. The zero value is not usable:
// make one with New. Its methods are safe for concurrent use.
type Histogram struct {
	bounds Bounds
	counts []atomic.Uint64 // len(bounds)+1: the last is +Inf
	sum    atomic.Int64    // nanoseconds
}

// New returns an empty histogram over bounds (not copied: do not change
// them afterwards).
func New(bounds Bounds) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts d: two atomic adds, no allocation. A negative d counts as 0.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	lo, hi := 0, len(h.bounds)
	for lo < hi { // the first bound >= d, or len(bounds)
		m := int(uint(lo+hi) >> 1)
		if h.bounds[m] < d {
			lo = m + 1
		} else {
			hi = m
		}
	}
	h.counts[lo].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is a histogram's figures at one moment.
type Snapshot struct {
	// Bounds are the buckets' upper bounds (shared: do not modify).
	Bounds Bounds
	// Counts are the observations per bucket, not cumulative; the last
	// one is above every bound. len(Counts) == len(Bounds)+1.
	Counts []uint64
	// Count is the number of observations: the sum of Counts.
	Count uint64
	// Sum is the sum of the observed durations.
	Sum time.Duration
}

// Snapshot reads the histogram. Observations made meanwhile may be in the
// counts and not yet in the sum, or the reverse; Count always equals the
// sum of Counts.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Bounds: h.bounds, Counts: make([]uint64, len(h.counts)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	return s
}

// Add adds o's counts and sum to s, which must have the same bounds (or be
// the zero Snapshot, which takes o's).
func (s *Snapshot) Add(o Snapshot) {
	if s.Counts == nil {
		s.Bounds, s.Counts = o.Bounds, make([]uint64, len(o.Counts))
	}
	for i := range o.Counts {
		s.Counts[i] += o.Counts[i]
	}
	s.Count += o.Count
	s.Sum += o.Sum
}

// Cumulative returns the count of observations at or below each bound, in
// seconds, as Prometheus' histograms want them (+Inf excluded: that is
// Count).
func (s Snapshot) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(s.Bounds))
	var n uint64
	for i, b := range s.Bounds {
		n += s.Counts[i]
		out[b.Seconds()] = n
	}
	return out
}
