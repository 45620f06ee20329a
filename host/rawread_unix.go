//go:build unix && !portableread

package host

import (
	"io"
	"net"
	"syscall"
)

// readHoldsBuffer: an idle direction holds no chunk buffer (see read).
const readHoldsBuffer = false

// read makes one read of src through its RawConn: the callback makes the
// read system call and nothing else, so a Close of the socket from another
// goroutine never waits for it. A buffer is taken from the pool only when
// bytes are ready and given back when the source has none, so an idle
// connection holds none. The outcome is in r.n and r.err; the error
// returned is the RawConn's (a deadline, a closed socket).
func (r *reader) read(src *net.TCPConn) error {
	if r.rc == nil {
		rc, err := src.SyscallConn()
		if err != nil {
			return err
		}
		r.rc = rc
		r.fn = r.readFD
	}
	return r.rc.Read(r.fn)
}

func (r *reader) readFD(fd uintptr) bool {
	if r.buf == nil {
		r.buf = getBuf()
	}
	b := (*r.buf)[:cap(*r.buf)]
	for {
		n, err := syscall.Read(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			r.release()
			return false // wait for the next readiness event
		case err != nil:
			r.err = err
		case n == 0:
			r.err = io.EOF
		default:
			r.n = n
		}
		return true
	}
}
