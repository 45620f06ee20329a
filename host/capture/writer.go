package capture

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// DefaultQueueBytes is the default bound of the bytes waiting for the
// writer goroutine (Options.QueueBytes).
const DefaultQueueBytes = 32 << 20

// DefaultCloseWait is the default of Options.CloseWait: enough to write a
// full default queue at a few MB/s.
const DefaultCloseWait = 10 * time.Second

// queueRecords bounds the number of events waiting, whatever their size.
const queueRecords = 8192

// recordOverhead is what an event costs in the queue besides its payload,
// so that a flood of empty events is bounded too.
const recordOverhead = 128

// dropLogEvery is how often, at most, a Writer logs that it drops packets.
const dropLogEvery = 10 * time.Second

// Leg numbers, which are also the pcapng interface numbers.
const (
	// LegClient is interface 0: the client's connection to the tunnel.
	LegClient = 0
	// LegTarget is interface 1: the tunnel's connection to the target.
	LegTarget = 1
)

// Options configure a [Writer].
type Options struct {
	// Path is the file to write, for [Create]. Its file name (not its
	// directory) may hold the directives %Y (year), %m (month), %d (day),
	// %H, %M, %S (hour, minute, second, local time) and %% (a percent
	// sign): the name is expanded when a file is started, and a new file
	// is started when the expansion changes (at midnight for %Y%m%d).
	// A name already taken gets a counter before its extension
	// (redis-20260102-1.pcapng): a Writer never overwrites a file.
	Path string
	// MaxSize starts a new file once the current one holds this many
	// bytes (0: never).
	MaxSize int64
	// MaxFiles keeps at most this many files matching Path in its
	// directory, removing the oldest when a new file is started (0: all).
	MaxFiles int
	// QueueBytes bounds the bytes waiting to be written (default
	// DefaultQueueBytes). Past it, packets are dropped and counted.
	QueueBytes int64
	// KeyLogWait bounds how long packets of a TLS session wait for its
	// key log lines when a key log is expected (see [KeyLogWriter];
	// default DefaultKeyLogWait).
	KeyLogWait time.Duration
	// CloseWait bounds how long Close waits for the queued packets to be
	// written (default DefaultCloseWait): past it, a file that takes no
	// more bytes (a hung disk) is abandoned and Close returns an error.
	CloseWait time.Duration
	// Logger receives the Writer's problems: a file it cannot write,
	// packets dropped. Nil means slog.Default().
	Logger *slog.Logger

	retryEvery time.Duration // tests: failRetry otherwise
	// disk, when set (tests), stands between the Writer and each file it
	// writes, as a disk that fills up would.
	disk func(io.Writer) io.Writer
}

// failRetry is how long a Writer whose file failed (a directory that
// refuses it, a full disk) drops packets before it starts a new file.
const failRetry = 5 * time.Second

// Stats counts what a Writer did, per leg ([LegClient], [LegTarget]).
type Stats struct {
	// Written is the number of packets written.
	Written [2]uint64
	// Dropped is the number of packets dropped because the writer was
	// behind (the queue was full) or its file failed.
	Dropped [2]uint64
	// Files is the number of files started.
	Files int
}

// A Writer writes the packets of captured connections to pcapng files, from
// a goroutine of its own, so that the hooks of [Links] never wait for it.
// Close flushes and closes it; the files are valid pcapng at any time the
// Writer is idle, and complete (with interface statistics) after Close.
type Writer struct {
	opts  Options
	log   *slog.Logger
	q     *recQueue
	limit int64

	queued  atomic.Int64
	closed  atomic.Bool
	dropped [2]atomic.Uint64
	written [2]atomic.Uint64
	files   atomic.Int64
	// rotated is the file the last Rotate closed: written by the writer
	// goroutine before it signals Rotate's record done, read by Rotate
	// after.
	rotated string

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	err       error // the first write error, read after done

	conns sync.Map // *host.ConnInfo -> *connState, from the first link's Open to the last's
	taps  sync.Map // tapKey -> *wireLeg, from WireTap to the first link's Open

	// TLS key log lines added and not yet written (AddKeyLog).
	keyMu      sync.Mutex
	keyPending []byte
	keyHas     atomic.Bool
	expectKeys atomic.Bool // KeyLogWriter was called: hold TLS handshakes for their keys

	// The writer goroutine's state.
	batch    []record   // the records drain took last (recQueue.take)
	freed    []*payload // small payloads written since, for the free list
	out      io.Writer  // New's writer, or nil for files
	name     *pattern   // Create's path
	file     *os.File
	fileName string
	fileBase string // the expansion of the path the file was started for
	checked  int64  // the Unix second the expansion was last checked
	counter  int
	size     countingWriter
	bw       *bufio.Writer
	ng       *pcapgo.NgWriter
	start    time.Time
	baseDrop [2]uint64
	// reported is, per leg, the drops counted by some file's interface
	// statistics: a file's count starts there, so that packets dropped
	// while no file could be written (a missing directory, a full disk)
	// are counted by the next file that can.
	reported  [2]uint64
	baseWrite [2]uint64
	dirty     bool
	pkt       []byte
	loggedAt  time.Time
	logged    uint64
	// failDrops is the packets dropped because a file failed (the rest
	// of dropped: the queue was full), loggedFails its value at the last
	// report, so that the report says why.
	failDrops   uint64
	loggedFails uint64
	// landed says the current file got its header to disk (seen after a
	// flush or a record): only then are old files pruned for it and a
	// recovery logged. header is the size of that header.
	landed    bool
	header    int64
	failed    error     // the current file failed: drop until the next one
	retryAt   time.Time // when to start a next one after a failure
	retrying  bool      // since the last failure; the first of a run is logged
	fileKeys  []byte    // the key log lines written so far, for the next file
	holds     []*flow   // the flows holding packets until their keys come, oldest first
	owing     []*flow   // the flows that may owe an ACK (writeRecord)
	lastPkt   time.Time // the time of the last packet written
	heldBytes int64
	timer     *time.Timer
	recent    recentRandoms // client randoms of the key lines written lately
}

// record is one event of one leg, queued by a hook for the writer.
type record struct {
	f       *flow
	kind    uint8
	from    uint8
	seq     uint32
	ack     uint32
	t       time.Time
	buf     *payload // a data record's bytes (shared by both legs when equal); nil when dropped
	off, n  int      // the payload is buf.b[off:off+n]
	cost    int64    // what it holds of the queue's bound
	comment string
	sync    chan struct{}
	// twin, when set, is the same bytes on the other leg (the chain
	// forwarded the chunk unchanged): a second data record in this one.
	twin twinData
}

// split returns r's twin as a record of its own, sharing r's bytes, and r
// without it.
func (r record) split() (first, twin record) {
	tw := r.twin
	r.twin = twinData{}
	twin = tw.record(r.t, r.n)
	twin.buf, twin.off = r.buf, r.off
	if r.buf != nil {
		r.buf.refs.Add(1)
	}
	return r, twin
}

// data is a data record's payload.
func (r *record) data() []byte {
	if r.buf == nil {
		return nil
	}
	return r.buf.b[r.off : r.off+r.n]
}

// Record kinds.
const (
	kindOpen   = iota // SYN, SYN-ACK, ACK: seq is side 0's ISN, ack side 1's
	kindData          // payload segments from `from`, then the peer's ACK
	kindFin           // FIN from `from`, then the peer's ACK
	kindRst           // RST from `from`
	kindSync          // flush and signal
	kindRotate        // close the file and signal: the next packet starts a new one
	kindKeys          // key log lines are pending (AddKeyLog): write them
)

// packets is how many packets r makes.
func (r *record) packets() int {
	switch r.kind {
	case kindOpen:
		return 3
	case kindData:
		return r.f.segments(r.n) + 1
	case kindFin:
		return 2
	case kindRst:
		return 1
	}
	return 0
}

// payload is a copy of a chunk, shared by the records of both legs when
// the chain forwarded it unchanged, back in its pool when the last is done.
type payload struct {
	b    []byte
	refs atomic.Int32
}

// Payload copies come in two sizes: requests and replies are mostly a few
// dozen bytes, and a copy that small in a 32 KiB buffer touches a cold
// buffer per chunk, hundreds of them cycling through the queue between two
// drains; small copies share a pool of small buffers instead.
const smallPayload = 512

var (
	smallPool = sync.Pool{New: func() any { return &payload{b: make([]byte, 0, smallPayload)} }}
	bufPool   = sync.Pool{New: func() any { return &payload{b: make([]byte, 0, 32<<10)} }}
)

func getBuf(b []byte) *payload {
	pool := &bufPool
	if len(b) <= smallPayload {
		pool = &smallPool
	}
	p := pool.Get().(*payload)
	p.b = append(p.b[:0], b...)
	p.refs.Store(1)
	return p
}

// recycle is putBuf on the writer goroutine: a small payload goes to the
// hooks' free list at the next take (recQueue.take).
func (w *Writer) recycle(p *payload) {
	if p.refs.Add(-1) != 0 {
		return
	}
	if cap(p.b) == smallPayload {
		w.freed = append(w.freed, p)
		return
	}
	poolPut(p)
}

func putBuf(p *payload) {
	if p.refs.Add(-1) != 0 {
		return
	}
	poolPut(p)
}

// poolPut puts p, which no record holds, back in its pool.
func poolPut(p *payload) {
	switch c := cap(p.b); {
	case c == smallPayload:
		smallPool.Put(p)
	case c > smallPayload && c <= 256<<10:
		bufPool.Put(p)
	}
}

// Create returns a Writer to the files opts.Path names. The directory must
// exist and take files; the first file is created when the first packet is
// written. A file that fails (the directory refuses it, the disk is full)
// drops packets, counted, and a new file is tried 5 s later.
func Create(opts Options) (*Writer, error) {
	pat, err := checkPath(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	// A directory that refuses files is said now, not at the first
	// packet (which would drop every packet until a retry succeeds).
	probe, err := os.CreateTemp(pat.dir, ".tunnel-capture-*")
	if err != nil {
		return nil, fmt.Errorf("capture: directory %s does not take files: %w", pat.dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	w := newWriter(opts)
	w.name = pat
	go w.run()
	return w, nil
}

// CheckPath reports what would make [Create] refuse path: an unknown
// directive, or a directory that does not exist.
func CheckPath(path string) error {
	if _, err := checkPath(path); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return nil
}

func checkPath(path string) (*pattern, error) {
	pat, err := parsePattern(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(pat.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("directory %s does not exist", pat.dir)
	} else if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", pat.dir)
	}
	// A name that is a directory or a device would not be written: the
	// Writer never overwrites, so it would write NAME-1 next to it
	// (cfgdir-1, /dev/full-1) without saying why.
	if !strings.Contains(pat.name, "%") {
		if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
			if st.IsDir() {
				return nil, fmt.Errorf("%s is a directory: name a file in it, e.g. %s", path, filepath.Join(path, "capture-%Y%m%d.pcapng"))
			}
			return nil, fmt.Errorf("%s exists and is not a regular file: name a file to create", path)
		}
	}
	return pat, nil
}

// New returns a Writer to out, one pcapng section for the Writer's life
// (Path, MaxSize and MaxFiles are ignored). Close does not close out.
func New(out io.Writer, opts Options) (*Writer, error) {
	if out == nil {
		return nil, errors.New("capture: nil writer")
	}
	w := newWriter(opts)
	w.out = out
	go w.run()
	return w, nil
}

func newWriter(opts Options) *Writer {
	w := &Writer{
		opts:  opts,
		log:   opts.Logger,
		q:     newRecQueue(),
		limit: opts.QueueBytes,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.limit <= 0 {
		w.limit = DefaultQueueBytes
	}
	if w.opts.KeyLogWait <= 0 {
		w.opts.KeyLogWait = DefaultKeyLogWait
	}
	if w.opts.CloseWait <= 0 {
		w.opts.CloseWait = DefaultCloseWait
	}
	return w
}

// reserve takes cost bytes of the queue's bound, or reports that the
// queue is full (or the Writer closed).
func (w *Writer) reserve(cost int64) bool {
	if w.closed.Load() {
		return false
	}
	if w.queued.Add(cost) > w.limit {
		w.queued.Add(-cost)
		return false
	}
	return true
}

// enqueue hands r to the writer goroutine, or drops and counts it when the
// queue is full. It never blocks. A data record has its share of the queue
// already (or is dropped: no payload).
func (w *Writer) enqueue(r record) {
	if r.kind == kindData {
		if r.buf == nil {
			w.drop(r)
			return
		}
	} else {
		r.cost = recordOverhead
		if !w.reserve(r.cost) {
			w.drop(r)
			return
		}
	}
	if !w.closed.Load() && w.q.put(r, queueRecords) {
		return
	}
	w.queued.Add(-r.cost)
	w.drop(r)
}

func (w *Writer) drop(r record) {
	if r.twin.f != nil {
		first, twin := r.split()
		w.drop(first)
		w.drop(twin)
		return
	}
	w.dropped[r.f.leg].Add(uint64(r.packets()))
	if r.buf != nil {
		putBuf(r.buf)
	}
}

// Stats returns the Writer's counters so far.
func (w *Writer) Stats() Stats {
	var s Stats
	for i := range 2 {
		s.Written[i] = w.written[i].Load()
		s.Dropped[i] = w.dropped[i].Load()
	}
	s.Files = int(w.files.Load())
	return s
}

// Sync waits until every packet queued before the call is written and the
// file flushed, or the Writer is closed.
func (w *Writer) Sync() { w.signal(kindSync) }

// Rotate closes the current file (with its statistics) once the packets
// queued before the call are written, and waits for that: the next packet
// starts a new file. It returns the name of the file it closed ("" when no
// file was open, or on a Writer made by [New], where it only flushes).
// Calls of Rotate must not overlap.
func (w *Writer) Rotate() (closed string) {
	w.rotated = ""
	w.signal(kindRotate)
	return w.rotated
}

func (w *Writer) signal(kind uint8) {
	select {
	case <-w.done:
		return // the writer is gone: nothing would take the signal
	default:
	}
	ch := make(chan struct{})
	w.q.put(record{kind: kind, sync: ch}, -1) // a signal is never dropped
	select {
	case <-ch:
	case <-w.done:
	}
}

// Close writes what is queued, the interface statistics, flushes and closes
// the current file. Packets of connections still open are dropped from
// then on. It returns the first error writing a file met since the Writer
// last recovered from a failure (a later file's bytes reached the disk,
// which is logged, as the failure was): an error says the capture was
// failing when it ended. A writer stuck
// in a write for longer than Options.CloseWait is left behind: Close
// returns an error saying so, and teardown goes on.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		close(w.stop)
	})
	t := time.NewTimer(w.opts.CloseWait)
	defer t.Stop()
	select {
	case <-w.done:
		return w.err
	case <-t.C:
		return fmt.Errorf("capture: the queued packets were not written within %v (a write is stuck); the file is left as it is", w.opts.CloseWait)
	}
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.done)
	defer lowerPriority()()
	nap := time.NewTimer(0)
	<-nap.C
	woke := false
	for {
		if w.drain() > 0 || woke {
			woke = false
			// Busy: let the records gather in the queue for a moment
			// rather than being woken for each (a wake-up costs the
			// forwarding goroutine that sends more than the record).
			nap.Reset(busyNap)
			select {
			case <-nap.C:
				continue
			case <-w.stop:
				nap.Stop()
			}
		} else {
			// Idle: make what is written readable, then wait.
			w.flush()
			if !w.q.idle() {
				continue // records came in meanwhile
			}
			select {
			case <-w.q.wake:
				woke = true // more are likely to follow: gather them
				continue
			case <-w.holdTimer():
				w.releaseHolds(time.Now().Add(-w.opts.KeyLogWait))
				continue
			case <-w.stop:
			}
		}
		for w.drain() > 0 {
		}
		w.writeKeys()
		w.releaseHolds(time.Time{})
		w.closeFile()
		w.logDrops(true)
		return
	}
}

// busyNap is how long the writer waits between two drains of a busy queue.
// At a few GB/s, the queue's default 32 MiB holds many times that.
const busyNap = 2 * time.Millisecond

// drain processes the records queued, without waiting for more, and
// returns how many it processed.
func (w *Writer) drain() int {
	b := w.q.take(w.batch, &w.freed)
	for i := range b {
		w.process(b[i])
	}
	w.batch = b
	return len(b)
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// fileFailed records that writing the current file failed with err: the
// Writer drops packets until the next file, and Close reports err.
func (w *Writer) fileFailed(err error) {
	w.setFailed(err)
	if !w.retrying {
		w.log.Error("capture: writing failed; dropping packets until the next file", "file", w.fileName, "err", err, "retry_in", w.retryDelay().String())
	}
	if w.file != nil && w.size.n < w.header {
		// Not even its header reached the disk: it is no valid pcapng,
		// and kept it would count against MaxFiles in place of one with
		// packets. The next try starts another. (Its owed ACKs are
		// dropped by the next payOwed, the file having failed.) A file
		// with more is a pcapng cut short, which readers take.
		w.ng = nil
		w.closeOut()
		os.Remove(w.fileName)
	}
}

// setFailed records that the current file (or the start of one) failed
// with err: packets are dropped until a new file is tried, retryDelay on.
func (w *Writer) setFailed(err error) {
	w.failed = err
	w.fail(err)
	w.retryAt = time.Now().Add(w.retryDelay())
}

// retryDelay is how long a failed file drops packets before the next try.
func (w *Writer) retryDelay() time.Duration {
	if d := w.opts.retryEvery; d > 0 {
		return d
	}
	return failRetry
}

func (w *Writer) flush() {
	w.payOwed()
	if !w.dirty || w.ng == nil {
		return
	}
	w.dirty = false
	if err := w.ng.Flush(); err != nil {
		if w.failed == nil {
			w.fileFailed(err)
		}
		return
	}
	w.land()
}

// land records that the current file's bytes reached its disk: the first
// time, the old files past MaxFiles are pruned for it, and a recovery from
// a failure is logged (not before: a file that starts on a full disk fails
// at its first flush).
func (w *Writer) land() {
	if w.landed || w.failed != nil || w.file == nil || w.size.n < w.header {
		return
	}
	w.landed = true
	w.prune()
	if w.retrying {
		w.retrying = false
		w.err = nil // recovered: Close reports only a failure that lasts
		w.log.Info("capture: writing again after a failure", "file", w.fileName)
	} else {
		// The name may not be the one asked for (a taken name gets a
		// counter, directives expand): say which file to open.
		w.log.Info("capture: writing", "file", w.fileName)
	}
}

// process writes the packets of one record.
func (w *Writer) process(r record) {
	if w.keyHas.Load() {
		w.writeKeys()
	}
	switch r.kind {
	case kindKeys:
		return // written above
	case kindSync:
		w.writeKeys()
		w.releaseHolds(time.Time{})
		w.flush()
		close(r.sync)
		return
	case kindRotate:
		w.releaseHolds(time.Time{})
		if w.name != nil {
			if w.file != nil {
				w.rotated = w.fileName // read by Rotate after r.sync closes
			}
			w.closeFile()
		} else {
			w.flush()
		}
		close(r.sync)
		return
	}
	w.queued.Add(-r.cost)
	if r.twin.f != nil {
		first, twin := r.split()
		w.processData(first)
		w.processData(twin)
		return
	}
	w.processData(r)
}

// processData writes or holds the packets of a record that is not a
// signal, its share of the queue already given back.
func (w *Writer) processData(r record) {
	if w.expectKeys.Load() && w.hold(r) {
		return
	}
	w.write(r)
}

// write writes the packets of a data record to the current file, starting
// one if needed.
func (w *Writer) write(r record) {
	w.logDrops(false)
	if w.name != nil {
		w.checkName(r.t)
	}
	if w.failed != nil && w.name != nil && !time.Now().Before(w.retryAt) {
		// Try a new file: the disk may have room again, the directory
		// may take files again. (A Writer to New's writer has no next
		// one.)
		if w.ng != nil {
			w.closeFile()
		}
		w.failed = nil
		w.retrying = true
	}
	if w.ng == nil && w.failed == nil {
		if err := w.openFile(r.t); err != nil {
			w.setFailed(err)
			if !w.retrying {
				w.log.Error("capture: cannot start a file; dropping packets", "path", w.opts.Path, "err", err, "retry_in", w.retryDelay().String())
			}
		}
	}
	if w.failed != nil {
		w.failDrops += uint64(r.packets())
		w.drop(r)
		return
	}
	n, err := w.writeRecord(&r)
	w.written[r.f.leg].Add(uint64(n))
	if r.buf != nil {
		w.recycle(r.buf)
	}
	w.dirty = true
	if err != nil {
		w.dropped[r.f.leg].Add(uint64(r.packets() - n))
		w.failDrops += uint64(r.packets() - n)
		w.fileFailed(err)
		return
	}
	if !w.landed {
		w.land() // if the buffer went to disk
	}
	if w.name != nil && w.opts.MaxSize > 0 && w.size.n+int64(w.bw.Buffered()) >= w.opts.MaxSize {
		w.closeFile()
	}
}

// writeRecord writes r's packets and returns how many it wrote.
//
// A data record's closing ACK is not written at once but owed (see
// [owedAck]): when the flow's next packet comes from the peer and
// acknowledges the same bytes, as a reply does, it carries the ACK and the
// pure ACK is never written. Request and reply then make two packets a
// leg instead of four, which halves the writer's work with many small
// requests.
func (w *Writer) writeRecord(r *record) (int, error) {
	f := r.f
	n := 0
	if file := w.files.Load(); f.file != file {
		f.file = file
		if r.kind != kindOpen {
			// The connection began before this file (a rotation): a
			// handshake first, so that the file says who connected
			// (Wireshark, tunnel replay) and its numbers follow on.
			c, s := r.seq, r.ack
			if r.from == 1 {
				c, s = s, c
			}
			// Its packets are not r's: they count neither as written nor
			// as dropped.
			open := record{f: f, kind: kindOpen, seq: c - 1, ack: s - 1, t: r.t, comment: "synthetic handshake: the connection began before this file"}
			if _, err := w.writeRecord(&open); err != nil {
				return 0, err
			}
		}
	}
	if f.owe.set {
		if !f.owe.coveredBy(r) {
			if err := w.writeOwed(f, r.t); err != nil {
				return 0, err
			}
		}
		f.owe.set = false
	}
	var opts pcapgo.NgPacketOptions
	if r.comment != "" {
		opts.Comments = []string{r.comment}
	}
	err := r.packetsOf(r.kind != kindData, func(from int, flags uint8, seq, ack uint32, payload []byte) error {
		err := w.writePacket(f, r.t, from, flags, seq, ack, payload, opts)
		opts.Comments = nil // on the first packet only
		if err == nil {
			n++
		}
		return err
	})
	if err == nil && r.kind == kindData {
		f.owe = owedAck{set: true, from: 1 - r.from, seq: r.ack, ack: r.seq + uint32(r.n), t: r.t}
		if !f.owing {
			if len(w.owing) >= minOwingCompact && len(w.owing) == cap(w.owing) {
				w.compactOwing()
			}
			f.owing = true
			w.owing = append(w.owing, f)
		}
	}
	return n, err
}

// writePacket writes one packet of f.
func (w *Writer) writePacket(f *flow, t time.Time, from int, flags uint8, seq, ack uint32, payload []byte, opts pcapgo.NgPacketOptions) error {
	// Never back in time: a chunk read before its target was dialled
	// is stamped with its read, yet its target-leg packets follow the
	// handshake drawn at the dial's end. Each packet takes at least the
	// last one's time, so that the file is in strict time order (Wireshark's
	// deltas, capinfos) at the cost of a few microseconds.
	if t.Before(w.lastPkt) {
		t = w.lastPkt
	}
	w.lastPkt = t
	w.pkt = f.appendPacket(w.pkt[:0], from, flags, seq, ack, payload)
	ci := gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(w.pkt), Length: len(w.pkt), InterfaceIndex: f.leg}
	return w.ng.WritePacketWithOptions(ci, w.pkt, opts)
}

// owedAck is the pure ACK that closes a data record's packets, not yet
// written: the peer's next packet on the flow usually carries it.
type owedAck struct {
	set      bool
	from     uint8 // the acknowledging side
	seq, ack uint32
	t        time.Time // the data's time
}

// coveredBy reports whether r's first packet acknowledges what the owed
// ACK would: the acknowledging side's data, FIN or RST with the same
// acknowledgement number.
func (o *owedAck) coveredBy(r *record) bool {
	return (r.kind == kindData || r.kind == kindFin || r.kind == kindRst) && r.from == o.from && r.seq == o.seq && r.ack == o.ack
}

// writeOwed writes f's owed ACK, stamped at the later of its data's time
// and t (it is sent after the data, just before what comes next).
func (w *Writer) writeOwed(f *flow, t time.Time) error {
	o := &f.owe
	if t.Before(o.t) {
		t = o.t
	}
	err := w.writePacket(f, t, int(o.from), flagACK, o.seq, o.ack, nil, pcapgo.NgPacketOptions{})
	if err == nil {
		w.written[f.leg].Add(1)
	} else {
		w.dropped[f.leg].Add(1)
	}
	return err
}

// minOwingCompact is the length of Writer.owing from which it is
// compacted before it grows: a busy writer may not flush for a long time,
// and the flows of ended connections must not pile up in it.
const minOwingCompact = 1024

// compactOwing drops from w.owing the flows that owe nothing now (their
// ACK was carried or written since): it keeps the flows that do, so its
// length stays near the number of flows with a chunk not yet acknowledged.
func (w *Writer) compactOwing() {
	kept := w.owing[:0]
	for _, f := range w.owing {
		if f.owe.set {
			kept = append(kept, f)
		} else {
			f.owing = false
		}
	}
	clear(w.owing[len(kept):])
	w.owing = kept
}

// payOwed writes every owed ACK (before a flush: the file then shows each
// data record acknowledged), or, when there is no file to write them to
// (it failed), drops and counts them as any other packet.
func (w *Writer) payOwed() {
	for _, f := range w.owing {
		switch {
		case !f.owe.set:
		case w.ng != nil && w.failed == nil:
			if err := w.writeOwed(f, w.lastPkt); err != nil {
				w.fileFailed(err)
			}
			w.dirty = true
		default:
			w.dropped[f.leg].Add(1)
			w.failDrops++
		}
		f.owe.set, f.owing = false, false
	}
	clear(w.owing)
	w.owing = w.owing[:0]
}

// each calls put for each packet of r, in order, with the side that sends
// it, its TCP flags, sequence and acknowledgement numbers and payload,
// until put fails.
func (r *record) each(put func(from int, flags uint8, seq, ack uint32, payload []byte) error) error {
	return r.packetsOf(true, put)
}

// packetsOf is each, leaving out a data record's closing ACK unless
// dataAck is set.
func (r *record) packetsOf(dataAck bool, put func(from int, flags uint8, seq, ack uint32, payload []byte) error) error {
	f := r.f
	from := int(r.from)
	var err error
	switch r.kind {
	case kindOpen:
		c, s := r.seq, r.ack
		if err = put(0, flagSYN, c, 0, nil); err == nil {
			if err = put(1, flagSYN|flagACK, s, c+1, nil); err == nil {
				err = put(0, flagACK, c+1, s+1, nil)
			}
		}
	case kindData:
		b := r.data()
		seq := r.seq
		for len(b) > 0 && err == nil {
			m := min(len(b), f.mss)
			flags := uint8(flagACK)
			if m == len(b) {
				flags |= flagPSH
			}
			err = put(from, flags, seq, r.ack, b[:m])
			seq += uint32(m)
			b = b[m:]
		}
		if err == nil && dataAck {
			err = put(1-from, flagACK, r.ack, seq, nil)
		}
	case kindFin:
		if err = put(from, flagFIN|flagACK, r.seq, r.ack, nil); err == nil {
			err = put(1-from, flagACK, r.ack, r.seq+1, nil)
		}
	case kindRst:
		err = put(from, flagRST|flagACK, r.seq, r.ack, nil)
	}
	return err
}

// checkName starts a new file when the expansion of the path changed (at
// most once a second).
func (w *Writer) checkName(t time.Time) {
	if !w.name.timed || w.ng == nil && w.failed == nil {
		return
	}
	sec := t.Unix()
	if sec == w.checked {
		return
	}
	w.checked = sec
	if w.name.expand(t) != w.fileBase {
		w.closeFile()
		w.failed = nil
	}
}

// openFile starts the next file (or the section on New's writer).
func (w *Writer) openFile(t time.Time) error {
	out := w.out
	if w.name != nil {
		base := w.name.expand(t)
		if base != w.fileBase {
			w.counter = 0
		}
		f, name, n, err := w.name.create(base, w.counter)
		if err != nil {
			return err
		}
		w.file, w.fileName, w.fileBase, w.counter = f, name, base, n+1
		inUse.add(name)
		w.size = countingWriter{w: f}
		if w.opts.disk != nil {
			w.size.w = w.opts.disk(f)
		}
		out = &w.size
		w.landed = false // pruned for once its first flush lands
	} else if w.files.Load() > 0 {
		return errors.New("capture: the writer's section is closed")
	}
	w.bw = bufio.NewWriterSize(out, 256<<10)
	host, _ := os.Hostname()
	ng, err := pcapgo.NewNgWriterInterface(w.bw, legInterface(LegClient), pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "tunnel",
		Comment:     "synthetic TCP packets of the connections of a tunnel (" + host + ")",
	}})
	if err == nil {
		_, err = ng.AddInterface(legInterface(LegTarget))
	}
	if err != nil {
		w.closeOut()
		return fmt.Errorf("starting %s: %w", w.fileName, err)
	}
	if len(w.fileKeys) > 0 {
		// The keys of connections that may go on in this file.
		if err := ng.WriteDecryptionSecretsBlock(pcapgo.DSB_SECRETS_TYPE_TLS, w.fileKeys); err != nil {
			w.closeOut()
			return fmt.Errorf("starting %s: %w", w.fileName, err)
		}
	}
	w.ng = ng
	w.header = w.size.n + int64(w.bw.Buffered()) // no packet is written yet
	w.start = t
	w.dirty = true
	for i := range 2 {
		w.baseDrop[i] = w.reported[i]
		w.baseWrite[i] = w.written[i].Load()
	}
	w.files.Add(1)
	return nil
}

func legInterface(leg int) pcapgo.NgInterface {
	intf := pcapgo.NgInterface{
		LinkType:            layers.LinkTypeEthernet,
		TimestampResolution: 9,
		OS:                  runtime.GOOS,
	}
	if leg == LegClient {
		intf.Name = "client"
		intf.Description = "client leg: the bytes as the client sent and received them"
	} else {
		intf.Name = "target"
		intf.Description = "target leg: the bytes as the target received and sent them, after the plugins"
	}
	return intf
}

// closeFile writes the interface statistics, flushes and closes the current
// file. The next packet starts a new one.
func (w *Writer) closeFile() {
	w.payOwed()
	if w.ng == nil {
		w.failed = nil
		return
	}
	now := time.Now()
	var dropped [2]uint64
	for i := range 2 {
		dropped[i] = w.dropped[i].Load()
		drop := dropped[i] - w.baseDrop[i]
		wrote := w.written[i].Load() - w.baseWrite[i]
		err := w.ng.WriteInterfaceStats(i, pcapgo.NgInterfaceStatistics{
			LastUpdate:      now,
			StartTime:       w.start,
			EndTime:         now,
			PacketsReceived: wrote + drop,
			PacketsDropped:  drop,
		})
		if err != nil && w.failed == nil {
			w.failed = err
		}
	}
	if err := w.ng.Flush(); err != nil && w.failed == nil {
		w.failed = err
	}
	if w.failed != nil {
		w.fail(w.failed)
	} else {
		w.reported = dropped
		w.land()
	}
	w.ng = nil
	w.closeOut()
	w.failed = nil
}

func (w *Writer) closeOut() {
	w.bw = nil
	if w.file != nil {
		if err := w.file.Close(); err != nil {
			w.fail(fmt.Errorf("closing %s: %w", w.fileName, err))
		}
		inUse.remove(w.fileName)
		w.file = nil
	}
}

// logDrops logs the packets dropped since the last report: at once for the
// first, then at most every dropLogEvery, and at the end.
func (w *Writer) logDrops(final bool) {
	var total uint64
	for i := range 2 {
		total += w.dropped[i].Load()
	}
	if total == w.logged {
		return
	}
	if !final && w.logged != 0 && time.Since(w.loggedAt) < dropLogEvery {
		return
	}
	why := "the writer fell behind"
	switch fails := w.failDrops - w.loggedFails; {
	case fails == total-w.logged:
		why = "the file failed"
	case fails > 0:
		why = "the file failed, and the writer fell behind"
	}
	w.log.Warn("capture: packets dropped", "why", why, "path", w.opts.Path, "dropped", total, "since_last_report", total-w.logged)
	w.logged, w.loggedAt, w.loggedFails = total, time.Now(), w.failDrops
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
