//go:build linux

package host

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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

// pipeFDs are the two ends of a pipe; closed once, by whoever is first:
// destroy, or the cleanup of a pipe the pool dropped.
type pipeFDs struct {
	r, w   int
	closed atomic.Bool
}

func (f *pipeFDs) close() {
	if f.closed.CompareAndSwap(false, true) {
		syscall.Close(f.r)
		syscall.Close(f.w)
	}
}

// splicePipe carries a direction's bytes from socket to socket inside the
// kernel. A direction holds one only while bytes are in flight: it is taken
// from the pool when the source has bytes and given back, empty, when the
// source is drained, so an idle connection holds no pipe.
type splicePipe struct {
	fds  *pipeFDs
	data int // bytes in the pipe
}

var pipePool = sync.Pool{New: func() any {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return err
	}
	// Bigger than the default 64 KiB: fewer system calls for bulk
	// transfers. A failure (over /proc/sys/fs/pipe-max-size) leaves it.
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(fds[0]), fSetPipeSz, maxSplice)
	p := &splicePipe{fds: &pipeFDs{r: fds[0], w: fds[1]}}
	runtime.AddCleanup(p, (*pipeFDs).close, p.fds)
	return p
}}

func getPipe() (*splicePipe, error) {
	switch v := pipePool.Get().(type) {
	case *splicePipe:
		return v, nil
	case error:
		return nil, fmt.Errorf("pipe for splice: %w", v)
	}
	return nil, errors.New("pipe for splice: unexpected pool value")
}

// putPipe gives back a pipe; one that still holds bytes (after an error) is
// closed instead.
func putPipe(p *splicePipe) {
	if p.data != 0 {
		p.fds.close()
		return
	}
	pipePool.Put(p)
}

// splicer is a spliced direction's loop. It runs inside one RawConn.Read
// call on the source: splice what the source has into a pipe, splice the
// pipe into the destination (waiting for the destination to take it: that
// is the backpressure), and again, until the source would block, ends or
// fails.
type splicer struct {
	c       *conn
	dir     Direction
	dst     syscall.RawConn
	p       *splicePipe
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
	s := &splicer{c: c, dir: dir, dst: dstRC}
	s.readFn, s.writeFn = s.read, s.write
	err = srcRC.Read(s.readFn)
	if s.p != nil {
		putPipe(s.p)
		s.p = nil
	}
	switch {
	case s.werr != nil:
		return false, fmt.Errorf("%s: write: %w", dir, s.werr)
	case s.rerr != nil:
		return false, fmt.Errorf("%s: read: %w", dir, s.rerr)
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.unpoke(dir, src):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	// Source ended: propagate the half-close.
	if err := dst.CloseWrite(); err != nil && !c.aborted.Load() {
		return false, fmt.Errorf("half-close %s: %w", dir, err)
	}
	return false, nil
}

func (s *splicer) read(fd uintptr) bool {
	for {
		if s.p == nil {
			p, err := getPipe()
			if err != nil {
				s.rerr = err
				return true
			}
			s.p = p
		}
		n, err := syscall.Splice(int(fd), nil, s.p.fds.w, nil, maxSplice, spliceMove|spliceNonblock)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			putPipe(s.p) // empty: every byte spliced in was spliced out
			s.p = nil
			return false
		case err != nil:
			s.rerr = err
			return true
		case n == 0:
			s.eof = true
			return true
		}
		s.p.data = int(n)
		if err := s.dst.Write(s.writeFn); err != nil {
			s.werr = err
			return true
		}
		if s.werr != nil {
			return true
		}
		s.c.bytes[s.dir].Add(n) // before fresh: a sweep in between sees the bytes move
		if s.c.fresh[s.dir].Load() {
			s.c.fresh[s.dir].Store(false)
		}
	}
}

func (s *splicer) write(fd uintptr) bool {
	for s.p.data > 0 {
		n, err := syscall.Splice(s.p.fds.r, nil, int(fd), nil, s.p.data, spliceMove|spliceNonblock)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false // the destination is full: wait until it takes more
		case err != nil:
			s.werr = err
			return true
		}
		s.p.data -= int(n)
	}
	return true
}
