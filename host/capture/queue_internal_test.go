package capture

import (
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// The writer's sleep and the hooks' puts: a put after idle wakes it with
// one token however many follow; a put while records wait (the writer
// will take them anyway) sends none.
func TestRecQueueWakeUps(t *testing.T) {
	q := newRecQueue()
	woken := func() bool {
		select {
		case <-q.wake:
			return true
		default:
			return false
		}
	}
	if !q.idle() {
		t.Fatal("idle on an empty queue reported records")
	}
	if !q.put(record{seq: 1}, -1) || !q.put(record{seq: 2}, -1) {
		t.Fatal("put refused without a bound")
	}
	if !woken() {
		t.Fatal("a put after idle sent no wake-up")
	}
	if woken() {
		t.Fatal("two puts after one idle sent two wake-ups")
	}
	if q.idle() {
		t.Fatal("idle with two records queued reported none")
	}
	q.put(record{seq: 3}, -1)
	if woken() {
		t.Fatal("a put while records wait (the writer not sleeping) sent a wake-up")
	}
	b := q.take(nil, new([]*payload))
	if len(b) != 3 || b[0].seq != 1 || b[1].seq != 2 || b[2].seq != 3 {
		t.Fatalf("take: %d records %v; want seq 1, 2, 3 in order", len(b), b)
	}
	if q.put(record{seq: 4}, 1); !q.put(record{seq: 5}, 2) || q.put(record{seq: 6}, 2) {
		t.Fatal("put with max 2 did not take the second record or took the third")
	}
	// The batch given back is reused, emptied.
	b2 := q.take(b, new([]*payload))
	if len(b2) != 2 || b2[0].seq != 4 {
		t.Fatalf("second take: %v", b2)
	}
	if q.put(record{seq: 7}, -1); &q.recs[0] != &b[0] {
		t.Error("the batch given back to take is not the one the hooks fill next")
	}
}

// Small payloads the writer is done with go back to the hooks through the
// queue, at most maxFree of them; getBuf takes them before the pool.
func TestRecQueueFreeList(t *testing.T) {
	q := newRecQueue()
	freed := make([]*payload, maxFree+5)
	for i := range freed {
		freed[i] = &payload{b: make([]byte, 0, smallPayload)}
	}
	first := freed[0]
	last := freed[maxFree-1]
	q.take(nil, &freed)
	if len(freed) != 0 {
		t.Fatalf("take left %d payloads in freed", len(freed))
	}
	if len(q.free) != maxFree {
		t.Fatalf("free list holds %d payloads, want maxFree (%d)", len(q.free), maxFree)
	}
	p := q.getBuf([]byte("GET a"))
	if p != last || string(p.b) != "GET a" || p.refs.Load() != 1 {
		t.Fatalf("getBuf: %p %q refs %d; want the last freed payload (%p) holding the chunk, one reference", p, p.b, p.refs.Load(), last)
	}
	for len(q.free) > 1 {
		q.getBuf([]byte("x"))
	}
	if p := q.getBuf([]byte("y")); p != first {
		t.Fatalf("getBuf did not hand out every freed payload")
	}
	if p := q.getBuf(make([]byte, smallPayload+1)); cap(p.b) == smallPayload {
		t.Fatal("a large chunk got a small payload")
	}
}

// Several forwarding threads feed one Writer at once (routes on
// goroutines, or several routes' loops), in rounds: each round starts with
// the writer asleep, so the round's first records must wake it. Every
// record is written, none dropped, none twice. Each flow sends from one
// side only, so each data record is its packet and the pure ACK the next
// one does not carry.
func TestWriterManyProducers(t *testing.T) {
	w := newWriter(Options{}) // New, with the writer's sleeps reported
	w.out = io.Discard
	w.q.asleep = make(chan struct{}, 1)
	go w.run()
	const producers, rounds, perRound = 4, 6, 500
	flows := make([]*flow, producers)
	seqs := make([]uint32, producers)
	for i := range flows {
		flows[i] = newFlow(LegClient, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(40000+i)), netip.MustParseAddrPort("127.0.0.1:6379"))
		w.enqueue(record{f: flows[i], kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
		seqs[i] = 1001
	}
	chunk := []byte("SET key value\r\n")
	for round := range rounds {
		waitAsleep(t, w)
		var wg sync.WaitGroup
		for i := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perRound {
					r := record{f: flows[i], kind: kindData, seq: seqs[i], ack: 5001, t: time.Now(), n: len(chunk)}
					if cost := recordOverhead + int64(len(chunk)); w.reserve(cost) {
						r.buf, r.cost = w.q.getBuf(chunk), cost
					}
					seqs[i] += uint32(len(chunk))
					w.enqueue(r)
				}
			}()
		}
		wg.Wait()
		synced := make(chan struct{})
		go func() { w.Sync(); close(synced) }()
		select {
		case <-synced:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Sync still waiting after 20 s: the writer slept with records queued", round)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	want := uint64(producers * (3 + 2*rounds*perRound))
	if s.Written[LegClient] != want || s.Dropped != ([2]uint64{}) {
		t.Errorf("written %d, dropped %v; want %d written (3 for each handshake, 2 for each record), none dropped", s.Written[LegClient], s.Dropped, want)
	}
}

// waitAsleep waits until w's writer sleeps with nothing queued (it does
// once a Sync returned and nothing else came). A report may be one from
// before the last records: then the next one is waited for.
func waitAsleep(t *testing.T, w *Writer) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case <-w.q.asleep:
		case <-timeout:
			t.Fatal("the writer did not go to sleep within 20 s")
		}
		w.q.mu.Lock()
		asleep := w.q.sleeping && len(w.q.recs) == 0
		w.q.mu.Unlock()
		if asleep {
			return
		}
	}
}
