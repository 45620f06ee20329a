package capture

import "sync"

// recQueue carries records from the hooks to the writer goroutine. A hook
// appends under mu; the writer takes every record queued at once, about
// every busyNap while busy, and gives back the slice of its previous
// batch for the hooks to fill. In steady state mu and the slice's memory
// stay with the forwarding thread but for that one hand-over per batch,
// where a channel moved each record under a lock both threads took: about
// 0.2 µs of CPU a record more (BenchmarkHandoff).
type recQueue struct {
	mu   sync.Mutex
	recs []record
	// sleeping says the writer is waiting for wake (set by idle, cleared
	// by the put that wakes it).
	sleeping bool
	wake     chan struct{} // capacity 1
}

func newRecQueue() *recQueue {
	return &recQueue{wake: make(chan struct{}, 1)}
}

// put appends r unless max records are waiting (max < 0: no bound) and
// wakes the writer if it sleeps. It never blocks on the writer.
func (q *recQueue) put(r record, max int) bool {
	q.mu.Lock()
	if max >= 0 && len(q.recs) >= max {
		q.mu.Unlock()
		return false
	}
	q.recs = append(q.recs, r)
	wake := q.sleeping
	q.sleeping = false
	q.mu.Unlock()
	if wake {
		select {
		case q.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return true
}

// take returns the records queued, oldest first, and puts spare (the
// previous batch, whose records are done) in their place, emptied.
func (q *recQueue) take(spare []record) []record {
	clear(spare) // the payloads and flows go back to their owners
	q.mu.Lock()
	b := q.recs
	q.recs = spare[:0]
	q.mu.Unlock()
	return b
}

// idle reports whether nothing is queued, and if so marks the writer
// sleeping: the next put sends a wake-up.
func (q *recQueue) idle() bool {
	q.mu.Lock()
	empty := len(q.recs) == 0
	if empty {
		q.sleeping = true
	}
	q.mu.Unlock()
	return empty
}
