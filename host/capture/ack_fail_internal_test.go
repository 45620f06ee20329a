package capture

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tunnelwasm/tunnel/internal/tshark"
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
	files, _ := filepath.Glob(filepath.Join(dir, "x*.pcapng"))
	if len(files) != 1 {
		t.Fatalf("files %q, want one", files)
	}
	if !strings.Contains(log.String(), "capture: writing again after a failure") {
		t.Errorf("no line says the capture writes again:\n%s", log.String())
	}
	// The packets dropped while no file could be written are counted by
	// the file that came next, where Wireshark shows them; and the
	// failure, recovered from, is not an error at the end.
	if got, want := fileDrops(t, files[0]), w.Stats().Dropped[LegClient]; got != want || want == 0 {
		t.Errorf("the file's statistics count %d packets dropped on the client leg, want %d", got, want)
	}
	if w.err != nil {
		t.Errorf("Close would report %v, from a failure the writer recovered from", w.err)
	}
}

// fileDrops is the packets a pcapng file's statistics say the client leg
// dropped.
func fileDrops(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var drops uint64
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{StatisticsCallback: func(intf int, s pcapgo.NgInterfaceStatistics) {
		if intf == LegClient {
			drops = s.PacketsDropped
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	return drops
}

// fillingDisk fails every write with ENOSPC while full is set.
type fillingDisk struct {
	out  io.Writer
	full *bool
}

func (d fillingDisk) Write(p []byte) (int, error) {
	if *d.full {
		return 0, syscall.ENOSPC
	}
	return d.out.Write(p)
}

// TestFullDiskKeepsTheFileWithPackets: the disk fills up while a file is
// written, and stays full through several retries. Each retry's file gets
// not one byte to disk; it is removed (it is no valid pcapng), and it does
// not count against MaxFiles: the file with the packets stays. The
// failure is logged once, the recovery once (when a file's bytes land,
// not when it is created), and the drops say the file failed.
func TestFullDiskKeepsTheFileWithPackets(t *testing.T) {
	dir := t.TempDir()
	pat, err := checkPath(filepath.Join(dir, "x.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	full := false
	w := newWriter(Options{MaxFiles: 2, Logger: slog.New(slog.NewTextHandler(&log, nil)), retryEvery: time.Nanosecond,
		disk: func(f io.Writer) io.Writer { return fillingDisk{f, &full} }})
	w.name = pat
	a := newFlow(LegClient, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:6379"))
	w.write(record{f: a, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
	next := [2]uint32{1001, 5001}
	talk(w, a, &next, 0, "GET k")
	w.flush()
	first := filepath.Join(dir, "x.pcapng")
	full = true
	big := strings.Repeat("x", 300<<10) // past the buffer: written, and failing
	w.write(record{f: a, kind: kindData, from: 0, seq: next[0], ack: next[1], t: time.Now(), n: len(big), buf: getBuf([]byte(big))})
	if w.failed == nil {
		t.Fatal("the write on the full disk did not fail")
	}
	for range 3 { // retried, on a disk still full
		talk(w, a, &next, 1, "$1\r\nv\r\n")
		w.flush()
	}
	names := func() []string {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		return files
	}
	if got := names(); len(got) != 1 || got[0] != first {
		t.Errorf("files on the full disk: %q, want only %s (the retries' files removed)", got, first)
	}
	full = false
	talk(w, a, &next, 0, "GET k")
	w.flush()
	w.closeFile()
	w.logDrops(true)
	if got := names(); len(got) != 2 || !slices.Contains(got, first) {
		t.Errorf("files after the disk has room again: %q, want %s and the new one", got, first)
	}
	for _, want := range []struct {
		line string
		n    int
	}{
		{"capture: writing failed", 1},
		{"capture: writing again after a failure", 1},
		{`why="the file failed"`, 1},
	} {
		if n := strings.Count(log.String(), want.line); n != want.n {
			t.Errorf("%d lines with %q, want %d:\n%s", n, want.line, want.n, log.String())
		}
	}
	for _, f := range names() {
		tshark.Open(t, f).CheckClean()
	}
}

// shortDisk takes room bytes, then fails: the write that crosses it is
// partial (n < len(p)) with ENOSPC, as a file's write on a filling disk.
type shortDisk struct {
	out  io.Writer
	room *int
}

func (d shortDisk) Write(p []byte) (int, error) {
	if len(p) <= *d.room {
		*d.room -= len(p)
		return d.out.Write(p)
	}
	n, _ := d.out.Write(p[:*d.room])
	*d.room = 0
	return n, syscall.ENOSPC
}

// TestPartialFirstWriteKept: the disk fills during a file's first buffer
// write: the header and 200 KiB of packets reach the file, then ENOSPC.
// That file is a pcapng cut short, which readers take (replay does): it is
// kept, where a file whose header did not reach the disk is removed.
func TestPartialFirstWriteKept(t *testing.T) {
	dir := t.TempDir()
	pat, err := checkPath(filepath.Join(dir, "x.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	room := 200 << 10
	w := newWriter(Options{Logger: slog.New(slog.DiscardHandler), retryEvery: time.Hour,
		disk: func(f io.Writer) io.Writer { return shortDisk{f, &room} }})
	w.name = pat
	a := newFlow(LegClient, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:6379"))
	w.write(record{f: a, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
	next := [2]uint32{1001, 5001}
	for i := 0; w.failed == nil && i < 1000; i++ {
		talk(w, a, &next, i%2, strings.Repeat("x", 1000))
	}
	if w.failed == nil {
		t.Fatal("the disk never filled")
	}
	if st, err := os.Stat(filepath.Join(dir, "x.pcapng")); err != nil || st.Size() != 200<<10 {
		t.Errorf("the file with 200 KiB on disk: %v, %v; want it kept", st, err)
	}
}
