package logsink

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// out is an output that records each Write and, while its gate is shut,
// blocks in Write (a pipe nobody reads) until the gate opens.
type out struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	wrote  chan struct{} // a token per Write done
	gate   chan struct{} // nil: open; else Write waits until it is closed
}

func newOut(blocked bool) *out {
	o := &out{wrote: make(chan struct{}, 1000)}
	if blocked {
		o.gate = make(chan struct{})
	}
	return o
}

func (o *out) Write(p []byte) (int, error) {
	if o.gate != nil {
		<-o.gate
	}
	o.mu.Lock()
	o.buf.Write(p)
	o.writes++
	o.mu.Unlock()
	o.wrote <- struct{}{}
	return len(p), nil
}

func (o *out) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitWrite waits for the output's next Write, for at most 10 s.
func (o *out) waitWrite(t *testing.T) {
	t.Helper()
	select {
	case <-o.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("the output got no Write in 10 s")
	}
}

// TestOrderAndOneBatch: writes from several goroutines all reach the
// output, each whole and once, each goroutine's in its order, and what
// waited together goes out in one Write.
func TestOrderAndOneBatch(t *testing.T) {
	o := newOut(false)
	w := New(o, Options{Delay: time.Hour})
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				fmt.Fprintf(w, "g%d %d\n", g, i)
			}
		})
	}
	wg.Wait()
	if !w.Close(10 * time.Second) {
		t.Fatal("Close: the output did not take the last batch")
	}
	if o.writes != 1 {
		t.Errorf("%d Writes to the output, want 1 (one batch: the Delay had not passed)", o.writes)
	}
	next := make([]int, writers)
	lines := strings.Split(strings.TrimSuffix(o.String(), "\n"), "\n")
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l, "g%d %d", &g, &i); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d's write %d came where %d was due", g, i, next[g])
		}
		next[g]++
	}
	if len(lines) != writers*each {
		t.Errorf("%d lines, want %d", len(lines), writers*each)
	}
}

// TestDelay: a write reaches the output after about Delay, without Close.
func TestDelay(t *testing.T) {
	o := newOut(false)
	w := New(o, Options{Delay: 20 * time.Millisecond})
	defer w.Close(time.Second)
	start := time.Now()
	w.Write([]byte("one\n"))
	o.waitWrite(t)
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("written after %v, before the Delay of 20ms", d)
	}
	if got := o.String(); got != "one\n" {
		t.Errorf("output %q", got)
	}
	// The next write starts a batch of its own.
	w.Write([]byte("two\n"))
	o.waitWrite(t)
	if got := o.String(); got != "one\ntwo\n" {
		t.Errorf("output %q", got)
	}
}

// TestHalfFullWritesAtOnce: a batch that reaches half of Max is written
// without waiting for its Delay.
func TestHalfFullWritesAtOnce(t *testing.T) {
	o := newOut(false)
	w := New(o, Options{Delay: time.Hour, Max: 1000})
	defer w.Close(time.Second)
	w.Write(bytes.Repeat([]byte("x"), 499))
	w.Write([]byte("y"))
	o.waitWrite(t)
	if got := o.String(); len(got) != 500 {
		t.Errorf("%d bytes written, want 500", len(got))
	}
}

var droppedLine = regexp.MustCompile(`level=WARN msg="log output dropped" writes=(\d+) bytes=(\d+) to=stderr `)

// TestBlockedOutputDrops: while the output blocks, Write never does; what
// does not fit in Max is dropped whole, and once the output takes bytes
// again a line says how many writes and bytes went missing, before the
// writes kept after them.
func TestBlockedOutputDrops(t *testing.T) {
	o := newOut(true)
	w := New(o, Options{Delay: time.Millisecond, Max: 4096, Name: "stderr"})
	const n, size = 1000, 100 // 100 KB against 4 KiB held back
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		line := bytes.Repeat([]byte("-"), size-6)
		for i := range n {
			w.Write(fmt.Appendf(nil, "%04d %s\n", i, line))
		}
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a blocked output")
	}
	close(o.gate)
	if !w.Close(10 * time.Second) {
		t.Fatal("Close: the output did not take the last batch")
	}
	text := o.String()
	m := droppedLine.FindAllStringSubmatch(text, -1)
	if len(m) == 0 {
		t.Fatalf("no line reports the dropped writes; output:\n%s", text)
	}
	dropped, droppedBytes := 0, 0
	for _, d := range m {
		a, _ := strconv.Atoi(d[1])
		b, _ := strconv.Atoi(d[2])
		dropped += a
		droppedBytes += b
	}
	kept := 0
	last := -1
	for _, l := range strings.Split(text, "\n") {
		if len(l) != size-1 {
			continue
		}
		i, err := strconv.Atoi(l[:4])
		if err != nil || i <= last {
			t.Fatalf("line %q after write %d: kept writes out of order", l, last)
		}
		last = i
		kept++
	}
	if kept+dropped != n || droppedBytes != dropped*size {
		t.Errorf("%d writes kept, %d (%d bytes) reported dropped, want %d in all, %d bytes each", kept, dropped, droppedBytes, n, size)
	}
	// The first batch (the output blocked in its Write) and one more,
	// each at most what Max holds.
	if kept > 2*(4096/size) || kept == 0 {
		t.Errorf("%d writes kept, want at most two batches of what Max holds (%d)", kept, 4096/size)
	}
}

// TestDroppedHook: with Options.Dropped, the output gets only its writes;
// the hook hears of the drops.
func TestDroppedHook(t *testing.T) {
	o := newOut(true)
	var mu sync.Mutex
	var dropped, droppedBytes int
	w := New(o, Options{Delay: time.Millisecond, Max: 100, Dropped: func(n, b int) {
		mu.Lock()
		dropped += n
		droppedBytes += b
		mu.Unlock()
	}})
	for range 50 {
		w.Write([]byte("0123456789"))
	}
	close(o.gate)
	w.Close(10 * time.Second)
	text := o.String()
	if strings.Contains(text, "dropped") || len(text)%10 != 0 {
		t.Errorf("output %q: want only whole writes", text)
	}
	if kept := len(text) / 10; kept+dropped != 50 || droppedBytes != 10*dropped || dropped == 0 {
		t.Errorf("%d kept, %d (%d bytes) dropped, want 50 in all, some dropped", kept, dropped, droppedBytes)
	}
}

// TestCloseDoesNotWaitForABlockedOutput: Close gives up after its timeout
// when the output does not take bytes, and reports it; writes after Close
// are dropped.
func TestCloseDoesNotWaitForABlockedOutput(t *testing.T) {
	o := newOut(true)
	w := New(o, Options{Delay: time.Millisecond})
	w.Write([]byte("stuck\n"))
	start := time.Now()
	if w.Close(50 * time.Millisecond) {
		t.Error("Close reported everything written to an output that blocks")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a timeout of 50ms", d)
	}
	w.Write([]byte("late\n"))
	close(o.gate) // the goroutine's Write returns; it ends
	<-w.done
	if got := o.String(); got != "stuck\n" {
		t.Errorf("output %q, want only the write before Close", got)
	}
	if !w.Close(time.Second) {
		t.Error("a second Close, after the goroutine ended, reported a timeout")
	}
}

// TestOversizedWriteReported: a single write larger than Max, arriving
// while nothing else waits, is dropped, and the line that reports it goes
// out after about Delay, without waiting for another write or for Close.
func TestOversizedWriteReported(t *testing.T) {
	o := newOut(false)
	w := New(o, Options{Delay: time.Millisecond, Max: 100, Name: "stderr"})
	defer w.Close(10 * time.Second)
	w.Write(bytes.Repeat([]byte("x"), 101))
	o.waitWrite(t)
	m := droppedLine.FindStringSubmatch(o.String())
	if m == nil || m[1] != "1" || m[2] != "101" {
		t.Errorf("output %q: want the report of one write of 101 bytes dropped", o.String())
	}
}

// failingOut fails every Write, as /dev/full does.
type failingOut struct{}

func (failingOut) Write(p []byte) (int, error) { return 0, errors.New("no space left on device") }

// TestFailedHook: an output whose writes fail is reported through Failed,
// with the bytes lost, once for a run of failures within FailReport. Its
// errors were ignored: an access log on a full disk lost every line
// without a word.
func TestFailedHook(t *testing.T) {
	var mu sync.Mutex
	var calls, lost int
	var last error
	w := New(failingOut{}, Options{Delay: time.Millisecond, Failed: func(err error, b int) {
		mu.Lock()
		calls++
		lost += b
		last = err
		mu.Unlock()
	}})
	w.Write([]byte("0123456789"))
	w.Close(10 * time.Second) // written out: the failure is reported
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 || lost != 10 || last == nil || last.Error() != "no space left on device" {
		t.Errorf("Failed called %d times, %d bytes lost, last error %v; want once, 10 bytes, the output's error", calls, lost, last)
	}
}
