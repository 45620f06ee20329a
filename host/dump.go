package host

import (
	"io"
	"sync"

	"github.com/tunnelwasm/tunnel/internal/hexdump"
)

// DumpFormat selects how Dump prints a chunk.
type DumpFormat uint8

const (
	// DumpHex prints each chunk like `hexdump -C`: offset, 16 bytes in hex, ASCII.
	DumpHex DumpFormat = iota
	// DumpText prints printable bytes as they are and escapes the rest (\n, \r, \t, \xNN).
	DumpText
)

// Dump returns a hook that writes every chunk it sees to w, then forwards it
// unchanged. Each chunk is a header line naming the connection, the direction
// and the length, then the bytes in the given format:
//
//	#1 client -> server 6 bytes
//	00000000  68 65 6c 6c 6f 0a                                 |hello.|
//
// Writes to w are serialised across connections, one whole chunk per Write,
// so the output of concurrent connections never interleaves inside a chunk.
// A nil w discards the dump (the chunks still pass unchanged).
func Dump(w io.Writer, format DumpFormat) Hook {
	if w == nil {
		w = io.Discard // a nil w used to reset every connection (a nil-pointer panic)
	}
	return &dumpHook{w: w, format: format}
}

type dumpHook struct {
	format DumpFormat
	mu     sync.Mutex
	w      io.Writer
	buf    []byte // reused under mu: the hot path allocates nothing
}

func (d *dumpHook) Open(info *ConnInfo) (Filter, error) {
	return &dumpFilter{d: d, id: info.ID}, nil
}

type dumpFilter struct {
	PassThrough
	d  *dumpHook
	id uint64
}

func (f *dumpFilter) Data(dir Direction, chunk []byte, s *Stream) error {
	f.d.print(f.id, dir, chunk)
	return s.Send(dir, chunk)
}

func (f *dumpFilter) End(dir Direction, s *Stream) error {
	f.d.mu.Lock()
	f.d.buf = hexdump.End(f.d.buf[:0], f.id, int(dir))
	_, _ = f.d.w.Write(f.d.buf)
	f.d.mu.Unlock()
	return nil
}

func (d *dumpHook) print(id uint64, dir Direction, chunk []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := hexdump.Header(d.buf[:0], id, int(dir), len(chunk))
	if d.format == DumpText {
		b = hexdump.Text(b, chunk)
	} else {
		b = hexdump.Hex(b, chunk)
	}
	d.buf = b
	// A failing stdout (closed pipe) must not break the forwarding.
	_, _ = d.w.Write(b)
}
