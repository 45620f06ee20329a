package capture

import (
	"bytes"
	"encoding/hex"
	"io"
	"slices"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// MaxKeyLogCarry bounds the key log lines a Writer keeps to write again at
// the start of each new file (rotation), so that connections that go on in
// the next file can still be decrypted: the newest lines are kept.
const MaxKeyLogCarry = 4 << 20

// AddKeyLog adds TLS key log lines (NSS key log format, "CLIENT_RANDOM
// ..." or "CLIENT_TRAFFIC_SECRET_0 ...", each ending in a newline) to the
// capture: they are written in a pcapng Decryption Secrets Block before any
// packet queued after the call, so that Wireshark and tshark decrypt the
// TLS streams of the file without a side file. The lines are also written
// again at the start of the next files (at most [MaxKeyLogCarry] bytes of
// them, the newest). Unlike packets, key lines are never dropped when the
// writer is behind. lines is copied; a line without its newline gets one.
//
// The key log holds the secrets of the sessions: a capture with them
// decrypts them. Keep such files as you would keep the keys.
func (w *Writer) AddKeyLog(lines []byte) {
	if len(lines) == 0 || w.closed.Load() {
		return
	}
	w.keyMu.Lock()
	w.keyPending = append(w.keyPending, lines...)
	if lines[len(lines)-1] != '\n' {
		w.keyPending = append(w.keyPending, '\n')
	}
	w.keyHas.Store(true)
	w.keyMu.Unlock()
	// Wake the writer, unless it is busy anyway: it writes pending keys
	// before its next record.
	w.q.put(record{kind: kindKeys}, queueRecords)
}

// KeyLogWriter returns an io.Writer for tls.Config.KeyLogWriter that adds
// what crypto/tls writes to w's capture ([Writer.AddKeyLog]). Its Write
// never fails and never waits for the file. To keep a key log file as
// well, combine both with io.MultiWriter.
func KeyLogWriter(w *Writer) io.Writer {
	w.expectKeys.Store(true)
	return keyLogWriter{w}
}

type keyLogWriter struct{ w *Writer }

func (k keyLogWriter) Write(p []byte) (int, error) {
	k.w.AddKeyLog(p)
	return len(p), nil
}

// writeKeys writes the pending key log lines in a Decryption Secrets Block
// of the current file (or keeps them for the next file when none is open).
func (w *Writer) writeKeys() {
	w.keyMu.Lock()
	lines := w.keyPending
	w.keyPending = nil
	w.keyHas.Store(false)
	w.keyMu.Unlock()
	if len(lines) == 0 {
		return
	}
	if w.ng != nil && w.failed == nil {
		if err := w.ng.WriteDecryptionSecretsBlock(pcapgo.DSB_SECRETS_TYPE_TLS, lines); err != nil {
			w.fileFailed(err)
		}
		w.dirty = true
	}
	w.keysWritten(lines)
	w.fileKeys = append(w.fileKeys, lines...)
	if over := len(w.fileKeys) - MaxKeyLogCarry; over > 0 {
		// Drop the oldest whole lines.
		cut := over
		if i := bytes.IndexByte(w.fileKeys[over:], '\n'); i >= 0 {
			cut = over + i + 1
		}
		w.fileKeys = append(w.fileKeys[:0], w.fileKeys[cut:]...)
	}
}

// Holding a TLS handshake until its keys are written.
//
// Wireshark loads a TLS 1.3 session's handshake secrets when it dissects
// the ServerHello, and gives up on the session if they are not known by
// then; but a TLS client logs its secrets only after it received that
// ServerHello, so its key log lines reach the Writer after the packet that
// needs them. When a key log is expected (KeyLogWriter was called), a leg
// whose client opens with a TLS ClientHello has its next packets held by
// the writer goroutine, until key log lines with the hello's client random
// are written (they go in the file first), or Options.KeyLogWait passes, or the held
// bytes pass maxHeldBytes (the oldest hold is then written as it is).
// The packets keep their timestamps; only their place in the file moves.
const maxHeldBytes = 8 << 20

// DefaultKeyLogWait is the default of Options.KeyLogWait.
const DefaultKeyLogWait = 2 * time.Second

// clientRandom returns the client random of a TLS ClientHello at the start
// of b: a handshake record (0x16, 0x03 0x0N) whose first message is a
// ClientHello (1), the random at offset 11.
func clientRandom(b []byte) ([32]byte, bool) {
	if len(b) < 43 || b[0] != 0x16 || b[1] != 0x03 || b[5] != 0x01 {
		return [32]byte{}, false
	}
	return [32]byte(b[11:43]), true
}

// hold keeps r back when its leg waits for keys, and starts the wait at a
// ClientHello. It reports whether it kept r.
func (w *Writer) hold(r record) bool {
	f := r.f
	if f.holding {
		f.held = append(f.held, r)
		w.heldBytes += recordSize(&r)
		for w.heldBytes > maxHeldBytes && len(w.holds) > 0 {
			w.release(w.holds[0])
		}
		return true
	}
	if r.kind != kindData || r.from != 0 || f.started {
		return false
	}
	f.started = true
	random, ok := clientRandom(r.data())
	if !ok || w.recent.done(random) {
		return false
	}
	// Write the ClientHello now; hold what follows.
	w.write(r)
	f.holding, f.random, f.since = true, random, time.Now()
	w.holds = append(w.holds, f)
	return true
}

func recordSize(r *record) int64 {
	return recordOverhead + int64(r.n)
}

// release writes the records f held and ends its hold.
func (w *Writer) release(f *flow) {
	if i := slices.Index(w.holds, f); i >= 0 {
		w.holds = slices.Delete(w.holds, i, i+1)
	}
	f.holding = false
	held := f.held
	f.held = nil
	for _, r := range held {
		w.heldBytes -= recordSize(&r)
		w.write(r)
	}
}

// releaseHolds releases the holds that started before t (all of them for
// the zero time).
func (w *Writer) releaseHolds(t time.Time) {
	for len(w.holds) > 0 && (t.IsZero() || w.holds[0].since.Before(t)) {
		w.release(w.holds[0])
	}
}

// holdTimer returns a channel that fires when the oldest hold expires, or
// nil when nothing is held.
func (w *Writer) holdTimer() <-chan time.Time {
	if len(w.holds) == 0 {
		return nil
	}
	d := time.Until(w.holds[0].since.Add(w.opts.KeyLogWait))
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	return w.timer.C
}

// Key log labels that complete a session's secrets, as bits: a hold ends
// when its session has keysDone (TLS 1.2's CLIENT_RANDOM holds them all; in
// TLS 1.3 both application traffic secrets come last, after the handshake
// ones, and Wireshark needs the server's before the server's Finished).
const (
	keyClientApp = 1 << iota
	keyServerApp
	keysDone = keyClientApp | keyServerApp
)

func keyBits(label []byte) uint8 {
	switch string(label) {
	case "CLIENT_RANDOM":
		return keysDone
	case "CLIENT_TRAFFIC_SECRET_0":
		return keyClientApp
	case "SERVER_TRAFFIC_SECRET_0":
		return keyServerApp
	}
	return 0
}

// keysWritten ends the holds of the sessions whose key lines were just
// written, once they have all their secrets.
func (w *Writer) keysWritten(lines []byte) {
	for line := range bytes.Lines(lines) {
		f := bytes.Fields(line)
		if len(f) != 3 || len(f[1]) != 64 {
			continue
		}
		var random [32]byte
		if _, err := hex.Decode(random[:], f[1]); err != nil {
			continue
		}
		if w.recent.add(random, keyBits(f[0])) != keysDone {
			continue
		}
		for i := 0; i < len(w.holds); {
			if h := w.holds[i]; h.random == random {
				w.release(h)
				continue
			}
			i++
		}
	}
}

// recentRandoms remembers the last client randoms seen in key lines and
// the secrets seen for each, so that a ClientHello whose keys were written
// before the writer saw it (a server's key log) is not held.
type recentRandoms struct {
	set  map[[32]byte]uint8
	ring [][32]byte
	next int
}

const recentKeep = 4096

// add records bits for k and returns all its bits so far.
func (r *recentRandoms) add(k [32]byte, bits uint8) uint8 {
	if r.set == nil {
		r.set = make(map[[32]byte]uint8, recentKeep)
		r.ring = make([][32]byte, 0, recentKeep)
	}
	if old, ok := r.set[k]; ok {
		r.set[k] = old | bits
		return old | bits
	}
	if len(r.ring) < recentKeep {
		r.ring = append(r.ring, k)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % recentKeep
	}
	r.set[k] = bits
	return bits
}

// done reports whether all the secrets of k were seen.
func (r *recentRandoms) done(k [32]byte) bool { return r.set[k] == keysDone }
