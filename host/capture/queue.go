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
	// free is small payloads the writer is done with, given back in bulk
	// at each take for the hooks to copy chunks into: recycled through
	// sync.Pool they were freed on the writer's P and taken on the
	// forwarding thread's, a steal from another P's pool each time (about
	// 0.1 µs a record).
	free []*payload
	// sleeping says the writer is waiting for wake (set by idle, cleared
	// by the put that wakes it).
	sleeping bool
	wake     chan struct{} // capacity 1
	// asleep, when set (tests), gets a token whenever idle marks the
	// writer sleeping.
	asleep chan struct{}
}

func newRecQueue() *recQueue {
	return &recQueue{wake: make(chan struct{}, 1)}
}

// put appends r unless bound records are waiting (bound < 0: no bound)
// and wakes the writer if it sleeps. It never blocks on the writer.
func (q *recQueue) put(r record, bound int) bool {
	q.mu.Lock()
	if bound >= 0 && len(q.recs) >= bound {
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
// previous batch, whose records are done) in their place, emptied, and
// the small payloads in freed (whose last record is done) in the free
// list, as far as it has room (maxFree); it empties freed.
func (q *recQueue) take(spare []record, freed *[]*payload) []record {
	clear(spare) // the payloads and flows go back to their owners
	f := *freed
	q.mu.Lock()
	b := q.recs
	q.recs = spare[:0]
	n := min(len(f), maxFree-len(q.free))
	q.free = append(q.free, f[:n]...)
	q.mu.Unlock()
	for _, p := range f[n:] {
		smallPool.Put(p)
	}
	clear(f)
	*freed = f[:0]
	return b
}

// maxFree bounds the free list (about 0.6 MiB of payloads a Writer keeps
// for good; more go to sync.Pool, which the GC drains): a busy writer's
// batch of 2 ms holds a few hundred small chunks at 100k requests a
// second.
const maxFree = 1024

// getBuf is getBuf taking a small payload from the free list when it has
// one.
func (q *recQueue) getBuf(b []byte) *payload {
	if len(b) > smallPayload {
		return getBuf(b)
	}
	q.mu.Lock()
	var p *payload
	if n := len(q.free); n > 0 {
		p = q.free[n-1]
		q.free[n-1] = nil
		q.free = q.free[:n-1]
	}
	q.mu.Unlock()
	if p == nil {
		return getBuf(b)
	}
	p.b = append(p.b[:0], b...)
	p.refs.Store(1)
	return p
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
	if empty && q.asleep != nil {
		select {
		case q.asleep <- struct{}{}:
		default:
		}
	}
	return empty
}
