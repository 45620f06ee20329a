package capture

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// failingOut is a file whose every write fails, as a full disk's would.
type failingOut struct{}

func (failingOut) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestOwedACKDroppedWhenTheFileFails: an ACK still owed when the file
// fails is a packet that never reaches the file, so it is counted as
// dropped (in Stats, the interface statistics and the log line), not
// forgotten.
func TestOwedACKDroppedWhenTheFileFails(t *testing.T) {
	w := newWriter(Options{Logger: slog.New(slog.DiscardHandler)})
	w.out = failingOut{}
	a := newFlow(LegClient, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:6379"))
	b := newFlow(LegTarget, netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:6380"))
	w.write(record{f: a, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
	next := [2]uint32{1001, 5001}
	talk(w, a, &next, 0, "GET k") // a now owes the target's ACK of these 5 bytes
	if !a.owe.set || w.failed != nil {
		t.Fatalf("after a small record: owed %v, failed %v; want an owed ACK and no failure yet (the bytes are buffered)", a.owe.set, w.failed)
	}
	// A record larger than the buffer makes the writer write to the file,
	// which fails.
	big := strings.Repeat("x", 300<<10)
	w.write(record{f: b, kind: kindOpen, seq: 1, ack: 1, t: time.Now()})
	w.write(record{f: b, kind: kindData, from: 0, seq: 2, ack: 2, t: time.Now(), n: len(big), buf: getBuf([]byte(big))})
	if w.failed == nil {
		t.Fatal("the big record's write did not fail")
	}
	before := w.Stats().Dropped[LegClient]
	w.flush()
	if got := w.Stats().Dropped[LegClient] - before; got != 1 {
		t.Errorf("the owed ACK of the client leg: %d packets counted as dropped at the flush, want 1", got)
	}
	if a.owe.set || len(w.owing) != 0 {
		t.Errorf("after the flush: owed %v, %d flows listed; want nothing owed", a.owe.set, len(w.owing))
	}
	if err := w.err; err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("the writer's error is %v, want the file's", err)
	}
}

// TestFileFailureRetried: a file that cannot be started (its directory is
// gone) dropped every packet until a SIGHUP or a reload; the Writer now
// tries a new file once retryEvery has passed, and logs that it writes
// again.
func TestFileFailureRetried(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "caps")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pat, err := checkPath(filepath.Join(dir, "x.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	w := newWriter(Options{Logger: slog.New(slog.NewTextHandler(&log, nil)), retryEvery: time.Nanosecond})
	w.name = pat
	a := newFlow(LegClient, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:6379"))
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	w.write(record{f: a, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
	if w.failed == nil || w.Stats().Dropped[LegClient] == 0 {
		t.Fatalf("with the directory gone: failed %v, dropped %d; want a failure and drops", w.failed, w.Stats().Dropped[LegClient])
	}
	w.write(record{f: a, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()}) // still gone: retried, not logged again
	if n := strings.Count(log.String(), "cannot start a file"); n != 1 {
		t.Errorf("%d lines about the failure, want 1:\n%s", n, log.String())
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.write(record{f: a, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
	if w.failed != nil || w.ng == nil {
		t.Fatalf("with the directory back: failed %v, file open %v; want a new file", w.failed, w.ng != nil)
	}
	w.closeFile()
	if files, _ := filepath.Glob(filepath.Join(dir, "x*.pcapng")); len(files) != 1 {
		t.Errorf("files %q, want one", files)
	}
	if !strings.Contains(log.String(), "capture: writing again after a failure") {
		t.Errorf("no line says the capture writes again:\n%s", log.String())
	}
}
