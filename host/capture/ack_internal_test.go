package capture

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// ackWriter is a Writer with no goroutine, writing to a file, for tests
// that call write, flush and closeFile themselves in a known order.
func ackWriter(t *testing.T) (*Writer, *flow, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ack.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := newWriter(Options{})
	w.out = f
	fl := newFlow(LegClient, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:6379"))
	w.write(record{f: fl, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
	return w, fl, path
}

// talk writes a data record of b from side `from`, as connState.data
// would, and advances next.
func talk(w *Writer, f *flow, next *[2]uint32, from int, b string) {
	w.write(record{f: f, kind: kindData, from: uint8(from), seq: next[from], ack: next[1-from], t: time.Now(), n: len(b), buf: getBuf([]byte(b))})
	next[from] += uint32(len(b))
}

// TestRepliesCarryTheACK: in a request/reply conversation, each data packet
// is acknowledged by the peer's next packet, so the file has no pure ACK
// between them (2 packets per exchange, not 4), and Wireshark still
// follows the bytes and finds no TCP problem.
func TestRepliesCarryTheACK(t *testing.T) {
	w, f, path := ackWriter(t)
	next := [2]uint32{1001, 5001}
	var sent [2]bytes.Buffer
	for i := range 10 {
		req, reply := strings.Repeat("q", i+1), strings.Repeat("R", 2*i+1)
		talk(w, f, &next, 0, req)
		talk(w, f, &next, 1, reply)
		sent[0].WriteString(req)
		sent[1].WriteString(reply)
	}
	for from := range 2 {
		w.write(record{f: f, kind: kindFin, from: uint8(from), seq: next[from], ack: next[1-from], t: time.Now()})
		next[from]++
	}
	w.closeFile()
	if w.err != nil {
		t.Fatal(w.err)
	}

	ts := tshark.Open(t, path)
	flags := ts.Fields(nil, "tcp.flags.str", "tcp.len")
	// SYN, SYN-ACK, ACK; 20 data packets; FIN, its ACK, FIN, its ACK.
	if len(flags) != 27 {
		t.Fatalf("%d packets, want 27 (no pure ACK between a request and its reply):\n%s", len(flags), strings.Join(flags, "\n"))
	}
	for i, l := range flags[3:23] {
		if !strings.HasPrefix(l, "\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7AP\u00b7\u00b7\u00b7") || strings.HasSuffix(l, "\t0") {
			t.Errorf("packet %d is %q, want a data packet (PSH, ACK)", i+4, l)
		}
	}
	if w.Stats().Written[LegClient] != 27 {
		t.Errorf("written %d packets, want 27", w.Stats().Written[LegClient])
	}
	ts.CheckClean()
	got := ts.FollowIndex(0)
	if string(got.Data[0]) != sent[0].String() || string(got.Data[1]) != sent[1].String() {
		t.Errorf("followed %q / %q, want %q / %q", got.Data[0], got.Data[1], sent[0].String(), sent[1].String())
	}
}

// TestOwedACKWrittenBeforeMoreOrAFlush: data the peer does not answer is
// still acknowledged: the ACK is written before the sender's next packet,
// and at a flush (the writer going idle, Sync, a new file) for the last.
func TestOwedACKWrittenBeforeMoreOrAFlush(t *testing.T) {
	w, f, path := ackWriter(t)
	next := [2]uint32{1001, 5001}
	talk(w, f, &next, 0, "one")
	talk(w, f, &next, 0, "two")
	talk(w, f, &next, 0, "three")
	w.flush()
	if w.err != nil {
		t.Fatal(w.err)
	}
	// What a reader sees after the flush, before the file is closed.
	acks := tshark.Open(t, path).Fields(func(p tshark.Packet) bool {
		return p.Has("tcp.len") && p.Int("tcp.len") == 0 && p.Is("tcp.flags.ack", "1") && p.Is("tcp.flags.syn", "0") &&
			p.Is("ip.src", "127.0.0.1") && p.Is("tcp.srcport", "6379")
	}, "tcp.ack")
	if strings.Join(acks, " ") != "4 7 12" {
		t.Errorf("the target's pure ACKs acknowledge %q (relative), want 4 7 12: one per chunk", acks)
	}
	w.closeFile()
	tshark.Open(t, path).CheckClean() // the file as closed, read again
}

// TestOwingStaysBounded: a writer that never goes idle (no flush) keeps no
// trace of the flows whose ACKs were carried: 10,000 conversations, each
// a request, a reply and a FIN each way, leave the list of flows that may
// owe an ACK near its compaction threshold, not 10,000 long.
func TestOwingStaysBounded(t *testing.T) {
	w, _, _ := ackWriter(t)
	for i := range 10000 {
		f := newFlow(LegClient, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1024+i%60000)), netip.MustParseAddrPort("127.0.0.1:6379"))
		w.write(record{f: f, kind: kindOpen, seq: 1000, ack: 5000, t: time.Now()})
		next := [2]uint32{1001, 5001}
		talk(w, f, &next, 0, "PING\r\n")
		talk(w, f, &next, 1, "+PONG\r\n")
		for from := range 2 {
			w.write(record{f: f, kind: kindFin, from: uint8(from), seq: next[from], ack: next[1-from], t: time.Now()})
			next[from]++
		}
	}
	if n := len(w.owing); n > 2*minOwingCompact {
		t.Errorf("%d flows listed as owing after 10,000 ended conversations; want at most %d", n, 2*minOwingCompact)
	}
	w.closeFile()
	if w.err != nil {
		t.Fatal(w.err)
	}
}
