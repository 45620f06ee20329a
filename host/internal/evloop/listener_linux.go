//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// acceptRetryDelay is how long a listener rests after accept4 failed for
// lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), like nginx does, or
// for a reason that does not go away by itself (then the rest doubles at
// each failure in a row, up to maxAcceptRetryDelay).
const (
	acceptRetryDelay    = 100 * time.Millisecond
	maxAcceptRetryDelay = 5 * time.Second
)

// acceptBurst is how many connections a listener takes at one event when
// it was reported in the previous turn of the loop as well: a backlog is
// building up (a burst of clients, or turns made long by bulk transfers),
// and one accept per turn would let it grow.
const acceptBurst = 16

// Listener is a listening socket driven by a Loop.
type Listener struct {
	l  *Loop
	a  Acceptor
	fd int

	resumeQueued atomic.Bool // a Resume is posted and not yet run

	// Loop-thread state.
	paused   bool // not polled: Admit said no, or accept4 ran out of resources
	closed   bool
	retry    timer
	lastTurn uint64        // the loop's turn of the last accept
	failRest time.Duration // the rest after the last failure in a row (0: none)
}

// AddListener makes the loop accept on fd, a bound, listening socket (it is
// made non-blocking if it is not). The loop takes ownership of fd and
// closes it on Listener.Close or Loop.Close; on error the caller keeps it.
func (l *Loop) AddListener(fd int, a Acceptor) (*Listener, error) {
	if fd < 0 || a == nil {
		return nil, fmt.Errorf("evloop: add listener: invalid fd %d or nil acceptor", fd)
	}
	ln := &Listener{l: l, a: a, fd: fd, retry: timer{index: -1}}
	ln.retry.fire = ln.resume
	var err error
	ok := l.call(func() {
		if l.stopping {
			err = ErrClosed
			return
		}
		if err = unix.SetNonblock(fd, true); err != nil {
			err = fmt.Errorf("set non-blocking: %w", err)
			return
		}
		// Accepted sockets inherit TCP_NODELAY from their listener: one
		// system call per listener instead of one per connection.
		setNoDelay(fd)
		if err = ln.poll(); err != nil {
			return
		}
		l.setHandler(fd, ln)
		l.listeners[ln] = struct{}{}
	})
	if !ok {
		err = ErrClosed
	}
	if err != nil {
		return nil, fmt.Errorf("evloop: add listener fd %d: %w", fd, err)
	}
	return ln, nil
}

// Resume makes the loop poll a listener paused by Admit again. It is safe
// from any goroutine, including loop callbacks, and does not wait; it is a
// no-op for a listener that is not paused or is closed.
func (ln *Listener) Resume() {
	if ln.resumeQueued.Swap(true) {
		return
	}
	ln.l.post(func() {
		ln.resumeQueued.Store(false)
		ln.resume()
	})
}

// Close stops accepting and closes the listening fd; connections already
// accepted carry on. It is safe from any goroutine but a loop callback,
// idempotent, and returns once the loop has closed the fd.
func (ln *Listener) Close() {
	ln.l.call(ln.close)
}

// onEvent accepts a pending connection.
func (ln *Listener) onEvent(uint32) {
	ln.accept()
}

// resume polls the listener again and accepts what waits in the backlog.
func (ln *Listener) resume() {
	if ln.closed || !ln.paused {
		return
	}
	ln.l.timers.remove(&ln.retry)
	if err := ln.poll(); err != nil {
		ln.l.log(slog.LevelError, "evloop: resume listener", "err", err)
		return
	}
	ln.paused = false
	ln.accept()
}

// poll adds the listener to the loop's epoll set, exclusively where the
// kernel knows how (Linux 4.5 and later).
func (ln *Listener) poll() error {
	ev := unix.EpollEvent{Events: listenEvents, Fd: int32(ln.fd)}
	err := unix.EpollCtl(ln.l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev)
	if errors.Is(err, unix.EINVAL) {
		ev.Events &^= unix.EPOLLEXCLUSIVE
		err = unix.EpollCtl(ln.l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev)
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl add fd %d: %w", ln.fd, err)
	}
	return nil
}

// rest pauses the listener for d, then resumes it.
func (ln *Listener) rest(d time.Duration) {
	ln.pause()
	ln.l.timers.set(&ln.retry, ln.l.now+int64(d))
}

// pause stops polling the listener.
func (ln *Listener) pause() {
	if err := unix.EpollCtl(ln.l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil); err != nil {
		ln.l.log(slog.LevelError, "evloop: pause listener", "err", err)
		return
	}
	ln.paused = true
}

// close closes the listening fd (loop thread).
func (ln *Listener) close() {
	if ln.closed {
		return
	}
	ln.closed = true
	ln.l.timers.remove(&ln.retry)
	if !ln.paused {
		// Before the close: other loops may hold descriptors of the same
		// socket, and epoll forgets a registration at close only when no
		// descriptor of the socket is left, so this loop would go on
		// hearing of the listener under a number it may give to another
		// socket.
		unix.EpollCtl(ln.l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	}
	ln.l.setHandler(ln.fd, nil)
	unix.Close(ln.fd)
	delete(ln.l.listeners, ln)
}

// accept accepts one connection, unless Admit says no, or up to
// acceptBurst when the listener was reported in the previous turn too. The
// registration is level-triggered: while the backlog holds more, the next
// epoll_wait reports the listener again, so accept is not called only to
// learn that the backlog is empty (nginx's multi_accept off: one connection
// at a time costs one accept4 instead of two).
func (ln *Listener) accept() {
	burst := 1
	if ln.lastTurn+1 >= ln.l.turns {
		burst = acceptBurst
	}
	ln.lastTurn = ln.l.turns
	for !ln.closed && !ln.paused && !ln.l.stopping {
		ln.l.callOut()
		admit := ln.a.Admit()
		ln.l.callBack()
		if !admit {
			ln.pause()
			return
		}
		// The standard library's accept4, not x/sys/unix's: the latter asks
		// the listener for its protocol (getsockopt SO_PROTOCOL) on every
		// accept of an AF_INET socket, to tell L2TP apart: a system call
		// per connection for nothing.
		fd, sa, err := syscall.Accept4(ln.fd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			if u, ok := ln.a.(Unadmitter); ok {
				ln.l.callOut()
				u.Unadmit()
				ln.l.callBack()
			}
		}
		switch {
		case err == nil:
			ln.failRest = 0
			ln.l.startConn(fd, sa, ln.a)
			if burst--; burst == 0 {
				return
			}
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED),
			// Linux hands a pending connection's network error to accept4
			// (accept(2): "treat them like EAGAIN by retrying"); that
			// connection is gone, the next may be fine.
			errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.EPROTO),
			errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.EHOSTDOWN),
			errors.Is(err, unix.ENONET), errors.Is(err, unix.EHOSTUNREACH),
			errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENETUNREACH):
			continue
		case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE),
			errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
			ln.l.log(slog.LevelWarn, "evloop: accept: out of resources, pausing listener",
				"err", err, "retry", acceptRetryDelay)
			ln.rest(acceptRetryDelay)
			return
		default:
			// Level-triggered, a listener that stays readable while
			// accept4 keeps failing (e.g. EINVAL once it was shut down)
			// would be reported at every epoll_wait: rest it as above
			// rather than spin the loop.
			ln.failRest = min(max(2*ln.failRest, acceptRetryDelay), maxAcceptRetryDelay)
			ln.l.log(slog.LevelError, "evloop: accept failed, pausing listener", "err", err, "retry", ln.failRest)
			ln.rest(ln.failRest)
			return
		}
	}
}

// sockaddrToAddrPort converts an AF_INET or AF_INET6 socket address, of
// package unix or syscall.
func sockaddrToAddrPort(sa any) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// addrPortToSockaddr converts a target to a socket address and family.
func addrPortToSockaddr(ap netip.AddrPort) (unix.Sockaddr, int) {
	addr := ap.Addr().Unmap()
	if addr.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: addr.As4()}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: addr.As16()}, unix.AF_INET6
}
