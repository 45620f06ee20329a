package evloop

import "math"

// timer is one deadline in a timerHeap. It is embedded in the object it
// belongs to (a connection or a listener) so arming it never allocates.
type timer struct {
	when  int64  // loop clock, nanoseconds
	index int    // position in the heap, -1 when not armed
	fire  func() // called on the loop thread when the deadline passes
}

// timerHeap is a min-heap of armed timers ordered by when.
type timerHeap []*timer

// set arms t for when, or moves it there if it is already armed.
func (h *timerHeap) set(t *timer, when int64) {
	t.when = when
	if t.index >= 0 {
		h.fix(t.index)
		return
	}
	t.index = len(*h)
	*h = append(*h, t)
	h.up(t.index)
}

// remove disarms t; it is a no-op for a timer that is not armed.
func (h *timerHeap) remove(t *timer) {
	i := t.index
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	t.index = -1
	if i != last {
		h.fix(i)
	}
}

// next returns the earliest deadline, if any.
func (h timerHeap) next() (int64, bool) {
	if len(h) == 0 {
		return 0, false
	}
	return h[0].when, true
}

// popExpired disarms and returns the earliest timer if it is due at now.
func (h *timerHeap) popExpired(now int64) *timer {
	if len(*h) == 0 || (*h)[0].when > now {
		return nil
	}
	t := (*h)[0]
	h.remove(t)
	return t
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h timerHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h timerHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].when <= h[i].when {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts i towards the leaves and reports whether it moved.
func (h timerHeap) down(i int) bool {
	start := i
	for {
		child := 2*i + 1
		if child >= len(h) {
			break
		}
		if right := child + 1; right < len(h) && h[right].when < h[child].when {
			child = right
		}
		if h[i].when <= h[child].when {
			break
		}
		h.swap(i, child)
		i = child
	}
	return i > start
}

// addSat is t+d for a time t >= 0 on the loop's clock and a duration
// d >= 0, saturated at the end of time rather than wrapped to a time in
// the past (a timer set "never" must not fire at once).
func addSat(t, d int64) int64 {
	if d > math.MaxInt64-t {
		return math.MaxInt64
	}
	return t + d
}
