// Package logsink is an io.Writer for log output that never blocks its
// callers: writes are appended to a bounded buffer in memory, and a
// goroutine of its own writes the buffer out in batches. When the output
// does not keep up (a pipe nobody reads, a terminal paused with Ctrl-S, a
// disk that stalls), whole writes are dropped and counted instead of
// stalling the writer's callers, and a line saying how many went missing
// is written once the output takes bytes again.
//
// The tunnel logs the end of every connection on the goroutine that
// forwards it, often the event loop that forwards every connection of a
// route: a log write that blocked there would stall them all.
package logsink

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Options tunes a Writer; the zero value works.
type Options struct {
	// Delay is how long a write may wait in memory before the batch it
	// starts is written out (default 10 ms): one system call for every
	// write of that time instead of one each.
	Delay time.Duration
	// Max bounds the bytes waiting in memory (default 1 MiB); a write that
	// would go past it is dropped whole and counted. A batch is written
	// at once, before its Delay, when it holds half of Max. The batch the
	// output is taking is not counted: with an output that blocks, the
	// Writer holds up to about twice Max.
	Max int
	// Name names the output in the line that reports dropped writes, e.g.
	// "stderr" (default "output").
	Name string
	// Dropped, when set, is told of the writes dropped (how many and
	// their bytes) instead of a line in the output itself: for an output
	// whose readers expect only its own format. It runs on the Writer's
	// goroutine, before the batch that follows the drops is written.
	Dropped func(writes, bytes int)
	// Failed, when set, is told when the output's Write fails (a full
	// disk, /dev/full): at the first failure, then at most every
	// FailReport while it keeps failing, with the bytes lost since the
	// last call. It runs on the Writer's goroutine. Without it failures
	// are not reported (stderr has nowhere to say so).
	Failed func(err error, bytes int)
}

// FailReport is how often Options.Failed hears of an output that keeps
// failing.
const FailReport = 10 * time.Second

// Writer is a non-blocking, bounded, batching io.Writer in front of an
// output. Its methods are safe for concurrent use. Each Write is kept or
// dropped whole, and what is kept reaches the output in order. Close
// writes out what is left.
type Writer struct {
	out    io.Writer
	delay  time.Duration
	max    int
	name   string
	onDrop func(writes, bytes int)
	onFail func(err error, bytes int)

	// Of the writer goroutine: the output failed at failedAt (lastErr),
	// and lost lostB bytes since the last report.
	failedAt time.Time
	lostB    int
	lastErr  error

	mu      sync.Mutex
	buf     []byte // waiting for the writer goroutine
	armed   bool   // the writer goroutine has been told about buf
	closed  bool
	dropped int // writes dropped since the last report
	dropB   int // and their bytes

	kick   chan struct{} // capacity 1: buf has bytes (armed became true)
	urgent chan struct{} // capacity 1: buf holds half of max
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when the writer goroutine ends
}

// New returns a Writer in front of out and starts its goroutine, which
// ends with Close.
func New(out io.Writer, o Options) *Writer {
	if o.Delay <= 0 {
		o.Delay = 10 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 1 << 20
	}
	if o.Name == "" {
		o.Name = "output"
	}
	w := &Writer{
		out: out, delay: o.Delay, max: o.Max, name: o.Name, onDrop: o.Dropped, onFail: o.Failed,
		kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go w.run()
	return w
}

// Write keeps a copy of p to be written out, or drops it whole if the
// bytes waiting would then pass Options.Max, or if the Writer is closed.
// It never blocks on the output and always reports success: a log
// record's caller has nothing better to do with an error.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	keep := !w.closed && len(w.buf)+len(p) <= w.max
	if keep {
		w.buf = append(w.buf, p...)
	} else {
		w.dropped++
		w.dropB += len(p)
	}
	// The first write of a batch starts it, kept or dropped: a dropped
	// one (larger than Max with nothing waiting) so that its report goes
	// out.
	kick := !w.closed && !w.armed
	w.armed = w.armed || kick
	urgent := keep && len(w.buf) >= w.max/2
	w.mu.Unlock()
	if kick {
		signal(w.kick)
	}
	if urgent {
		signal(w.urgent)
	}
	return len(p), nil
}

// signal puts a token in c, a channel of capacity 1, unless one is there.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run is the writer goroutine: woken by the first write of a batch, it
// waits Delay (less if the batch grows to half of Max), then writes out
// everything waiting in one Write, and repeats while writes keep coming.
func (w *Writer) run() {
	defer close(w.done)
	var spare []byte
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		stopping := false
		select {
		case <-w.kick:
		case <-w.stop:
			stopping = true
		}
		if !stopping {
			t.Reset(w.delay)
			select {
			case <-t.C:
			case <-w.urgent:
				t.Stop()
			case <-w.stop:
				t.Stop()
				stopping = true
			}
		}
		spare = w.flush(spare)
		if stopping {
			w.recovered() // reports what was lost since the last report
			return
		}
	}
}

// flush writes out what is waiting (after a report of the writes dropped
// since the last one) and returns the buffer to keep for the next batch.
// The writes of one batch go out in one Write.
func (w *Writer) flush(spare []byte) []byte {
	w.mu.Lock()
	b := w.buf
	w.buf = spare[:0]
	w.armed = false
	dropped, dropB := w.dropped, w.dropB
	w.dropped, w.dropB = 0, 0
	w.mu.Unlock()
	switch {
	case dropped == 0:
	case w.onDrop != nil:
		w.onDrop(dropped, dropB)
	default:
		// Before the batch: the drops happened while older bytes were
		// waiting, and the batch is what came after them.
		var r bytes.Buffer
		slog.New(slog.NewTextHandler(&r, nil)).Warn("log output dropped", "writes", dropped, "bytes", dropB, "to", w.name, "why", "the output did not take bytes as fast as they came")
		b = append(r.Bytes(), b...)
	}
	if len(b) > 0 {
		if _, err := w.out.Write(b); err != nil {
			w.failed(err, len(b))
		} else if !w.failedAt.IsZero() {
			w.recovered()
		}
	}
	if cap(b) > w.max { // the report made it grow past the bound: let it go
		return nil
	}
	return b
}

// failed reports a failed Write of n bytes to onFail, at the first of a
// run of failures and then every FailReport.
func (w *Writer) failed(err error, n int) {
	if w.onFail == nil {
		return
	}
	w.lostB += n
	w.lastErr = err
	if now := time.Now(); w.failedAt.IsZero() || now.Sub(w.failedAt) >= FailReport {
		w.failedAt = now
		w.onFail(err, w.lostB)
		w.lostB = 0
	}
}

// recovered ends a run of failures: the bytes lost since the last report
// are reported now, not with the next failure.
func (w *Writer) recovered() {
	if w.lostB > 0 && w.onFail != nil {
		w.onFail(w.lastErr, w.lostB)
	}
	w.failedAt, w.lostB, w.lastErr = time.Time{}, 0, nil
}

// Close writes out what is waiting and stops the goroutine, waiting at
// most timeout for the output to take it (an output that blocks for good
// keeps the goroutine, which the process's exit ends). It reports whether
// everything was handed to the output (whose errors are ignored). Writes
// after Close are dropped, and not reported.
func (w *Writer) Close(timeout time.Duration) bool {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}
