//go:build linux

package host

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// spliceMovable: a spliced pump can be poked and moved (see conn.sweep).
const spliceMovable = true

const (
	spliceMove     = 0x1  // SPLICE_F_MOVE
	spliceNonblock = 0x2  // SPLICE_F_NONBLOCK
	fSetPipeSz     = 1031 // F_SETPIPE_SZ
	// maxSplice is the most one splice(2) moves, and the pipe's size.
	maxSplice = 1 << 20
)

// splicePipe carries a direction's bytes from socket to socket inside the
// kernel. A direction holds one only while bytes are in flight: it takes one
// when the source has bytes and gives it back, empty, when the source is
// drained, so an idle connection holds no pipe.
type splicePipe struct {
	r, w int
	data int // bytes in the pipe
}

// maxFreePipes bounds the pipes kept for reuse; more are closed at once, so
// descriptors never wait for a garbage collection to be released.
const maxFreePipes = 64

var freePipes struct {
	mu    sync.Mutex
	pipes []*splicePipe
}

func getPipe() (*splicePipe, error) {
	freePipes.mu.Lock()
	if n := len(freePipes.pipes); n > 0 {
		p := freePipes.pipes[n-1]
		freePipes.pipes[n-1] = nil
		freePipes.pipes = freePipes.pipes[:n-1]
		freePipes.mu.Unlock()
		return p, nil
	}
	freePipes.mu.Unlock()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("pipe for splice: %w", err)
	}
	// Bigger than the default 64 KiB: fewer system calls for bulk
	// transfers. It fails past /proc/sys/fs/pipe-max-size or, for a user
	// without CAP_SYS_RESOURCE, past the per-user pipe pages; the pipe then
	// keeps its size (as Go's own splice does).
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(fds[0]), fSetPipeSz, maxSplice)
	return &splicePipe{r: fds[0], w: fds[1]}, nil
}

// putPipe gives back a pipe for reuse, or closes it: when the free list is
// full, or when it still holds bytes (after an error), which must never
// reach another connection.
func putPipe(p *splicePipe) {
	if p.data == 0 {
		freePipes.mu.Lock()
		if len(freePipes.pipes) < maxFreePipes {
			freePipes.pipes = append(freePipes.pipes, p)
			freePipes.mu.Unlock()
			return
		}
		freePipes.mu.Unlock()
	}
	syscall.Close(p.r)
	syscall.Close(p.w)
}

// splicer is a spliced direction's loop: splice what the source has into a
// pipe (inside a Read of the source's RawConn), then splice the pipe into
// the destination (inside a Write of the destination's RawConn, waiting for
// the destination to take it: that is the backpressure), and again, until
// the source ends or fails. Each callback makes its system calls on its own
// socket and returns: no callback waits on the other socket, so closing
// either one from another goroutine wakes the loop at once.
type splicer struct {
	c       *conn
	dir     Direction
	p       *splicePipe
	buf     *[]byte // the fallback's bytes in flight, when no pipe could be made
	out     []byte  // what of buf is still to be written
	eof     bool
	rerr    error // reading the source failed
	werr    error // writing the destination failed
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

// splice is the path of a direction with no filter: splice(2) from socket
// to socket through a pipe, with no copy to user space. Unlike io.Copy
// (which also splices), it holds the pipe only while bytes are in flight.
// It returns handOff when a sweep poked it (see conn.sweep).
func (c *conn) splice(dir Direction, src, dst *net.TCPConn) (handOff bool, err error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	s := &splicer{c: c, dir: dir}
	s.readFn, s.writeFn = s.read, s.write
	defer s.release()
	for {
		if err = srcRC.Read(s.readFn); err != nil || s.eof || s.rerr != nil {
			break
		}
		if err = dstRC.Write(s.writeFn); err != nil || s.werr != nil {
			if s.werr == nil {
				s.werr = err
			}
			break
		}
	}
	switch {
	case s.werr != nil:
		return false, fmt.Errorf("%s: write: %w", dir, s.werr)
	case s.rerr != nil:
		return false, fmt.Errorf("%s: read: %w", dir, s.rerr)
	case errors.Is(err, os.ErrDeadlineExceeded) && c.unpoke(dir, src):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	// Source ended: propagate the half-close.
	c.sawEOF(dir)
	if err := dst.CloseWrite(); err != nil && !c.td.aborted.Load() {
		return false, fmt.Errorf("half-close %s: %w", dir, err)
	}
	return false, nil
}

// release gives back the pipe and the fallback buffer.
func (s *splicer) release() {
	if s.p != nil {
		putPipe(s.p)
		s.p = nil
	}
	if s.buf != nil {
		putBuf(s.buf)
		s.buf, s.out = nil, nil
	}
}

// read moves what the source has into the pipe (or, without a pipe, into
// the fallback buffer). It returns false to wait when the source has
// nothing, after giving the empty pipe back.
func (s *splicer) read(fd uintptr) bool {
	if s.p == nil && s.buf == nil {
		if p, err := getPipe(); err == nil {
			s.p = p
		} else {
			// Out of descriptors: copy through user space rather than
			// fail the connection, as io.Copy would.
			s.buf = getBuf()
		}
	}
	for {
		var n int
		var err error
		if s.p != nil {
			var n64 int64
			n64, err = syscall.Splice(int(fd), nil, s.p.w, nil, maxSplice, spliceMove|spliceNonblock)
			n = int(n64)
		} else {
			n, err = syscall.Read(int(fd), (*s.buf)[:cap(*s.buf)])
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.release() // empty: every byte read was written
			return false
		case err != nil:
			s.rerr = err
		case n == 0:
			s.eof = true
		case s.p != nil:
			s.p.data = n
			s.c.read[s.dir].Add(int64(n))
		default:
			s.out = (*s.buf)[:n]
			s.c.read[s.dir].Add(int64(n))
		}
		return true
	}
}

// write empties the pipe (or the fallback buffer) into the destination,
// returning false to wait while the destination is full.
func (s *splicer) write(fd uintptr) bool {
	for s.p != nil && s.p.data > 0 || len(s.out) > 0 {
		var n int
		var err error
		if s.p != nil {
			var n64 int64
			n64, err = syscall.Splice(s.p.r, nil, int(fd), nil, s.p.data, spliceMove|spliceNonblock)
			n = int(n64)
		} else {
			n, err = syscall.Write(int(fd), s.out)
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // the destination is full: wait until it takes more
		case err != nil:
			s.werr = err
			return true
		case n == 0 && s.p != nil:
			s.werr = io.ErrUnexpectedEOF // not expected from a pipe with bytes
			return true
		}
		if s.p != nil {
			s.p.data -= n
		} else {
			s.out = s.out[n:]
		}
		s.c.written[s.dir].Add(int64(n))
	}
	return true
}
