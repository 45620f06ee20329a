//go:build !unix || portableread

// The portableread tag builds this read on Linux too, so that the tests of
// package host run it there: go test -tags portableread ./host (.ci/run).

package host

import (
	"errors"
	"io"
	"net"
)

// readHoldsBuffer: an idle direction holds its chunk buffer (see read).
const readHoldsBuffer = true

// read makes one read of src. Off Unix (Windows) Go keeps sockets
// blocking, so a read inside a RawConn callback would block there; this
// read holds its buffer while it waits, and an idle filtered direction
// costs one buffer (RATIONALE.md, "Why read through syscall.RawConn…?").
// The outcome is in r.n and r.err; the error returned is the socket's (a
// deadline, a closed socket).
func (r *reader) read(src *net.TCPConn) error {
	if r.buf == nil {
		r.buf = getBuf()
	}
	for {
		n, err := src.Read((*r.buf)[:cap(*r.buf)])
		switch {
		case n > 0:
			r.n = n // an error with the bytes comes again at the next read
			return nil
		case errors.Is(err, io.EOF):
			r.err = io.EOF
			return nil
		case err != nil:
			return err
		}
	}
}
