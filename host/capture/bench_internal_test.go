package capture

import (
	"io"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkWriterRecord: the writer goroutine's work for one small data
// record of a request/reply conversation (its packets built, checksummed
// and written as pcapng to a discarding writer).
func BenchmarkWriterRecord(b *testing.B) {
	w := newWriter(Options{}) // no goroutine: this one writes
	w.out = io.Discard
	f := newFlow(0, netip.MustParseAddrPort("127.0.0.1:5555"), netip.MustParseAddrPort("127.0.0.1:6379"))
	chunk := make([]byte, 40)
	w.openFile(time.Now())
	b.ReportAllocs()
	var next [2]uint32
	for i := 0; b.Loop(); i++ {
		from := i & 1
		r := record{f: f, kind: kindData, from: uint8(from), seq: next[from], ack: next[1-from], t: time.Now(), n: len(chunk), buf: getBuf(chunk), cost: 1}
		next[from] += uint32(len(chunk))
		w.write(r)
	}
}
