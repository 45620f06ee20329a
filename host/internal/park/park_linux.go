//go:build linux

package park

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// events is the interest of a parked socket: readable, hung up or in error,
// reported once (EPOLLONESHOT), level-triggered.
const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// wakeToken is the epoll data of the eventfd that stops the goroutine.
const wakeToken = 0

// Parker waits for parked sockets on one goroutine. The zero value is not
// usable: make one with New.
type Parker struct {
	epfd   int
	wakefd int
	done   chan struct{} // closed when the goroutine has returned

	mu     sync.Mutex
	waits  map[uint64]wait // by token; guarded by mu
	next   uint64          // the last token given; guarded by mu
	closed bool            // guarded by mu
}

// wait is one parked socket.
type wait struct {
	rc syscall.RawConn
	fn func()
}

// Ticket names one Park, for Unpark.
type Ticket uint64

// New makes a Parker and starts its goroutine.
func New() (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("park: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("park: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, fmt.Errorf("park: epoll_ctl add eventfd: %w", err)
	}
	p := &Parker{epfd: epfd, wakefd: wakefd, done: make(chan struct{}), waits: make(map[uint64]wait)}
	go p.run()
	return p, nil
}

// Park calls fn, on the Parker's goroutine, once the socket of rc is
// readable (or hung up, or in error); it may be at once. fn must not block:
// it typically starts a goroutine. The error says the socket could not be
// parked (it is closed, or the Parker is): fn will never run.
func (p *Parker) Park(rc syscall.RawConn, fn func()) (Ticket, error) {
	return p.park(rc, events, fn)
}

// ParkErrors is Park for a socket whose peer has already ended its stream
// (so it is always readable): fn runs once the socket has an error (a reset)
// or has hung up both ways, not for bytes or the end of stream.
func (p *Parker) ParkErrors(rc syscall.RawConn, fn func()) (Ticket, error) {
	return p.park(rc, unix.EPOLLONESHOT, fn) // EPOLLERR and EPOLLHUP are always reported
}

func (p *Parker) park(rc syscall.RawConn, events uint32, fn func()) (Ticket, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	p.next++
	tok := p.next
	p.waits[tok] = wait{rc: rc, fn: fn}
	p.mu.Unlock()
	var cerr error
	err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: events}
		setToken(&ev, tok)
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		if errors.Is(cerr, unix.EEXIST) {
			// Parked before, woken, and still in the set (disarmed).
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.waits, tok)
		p.mu.Unlock()
		return 0, fmt.Errorf("park: %w", err)
	}
	return Ticket(tok), nil
}

// Unpark takes back the wait of t. It reports true when it did, before the
// socket woke it (fn will never run); false when fn has run or is about to.
func (p *Parker) Unpark(t Ticket) bool {
	p.mu.Lock()
	w, ok := p.waits[uint64(t)]
	delete(p.waits, uint64(t))
	p.mu.Unlock()
	if ok {
		p.forget(w.rc)
	}
	return ok
}

// forget removes rc's socket from the set; a socket already closed left it
// when it closed (Control then fails and runs nothing).
func (p *Parker) forget(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// Close stops the goroutine and waits for it. Waits still parked are
// dropped: their fn never runs (the owners unpark their sockets first).
func (p *Parker) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(p.wakefd, one[:])
	}
	p.mu.Unlock()
	<-p.done
}

// Len returns how many sockets are parked.
func (p *Parker) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waits)
}

// run is the Parker's goroutine: it blocks in epoll_wait, in an ordinary
// system call (the runtime hands its P to other goroutines meanwhile).
func (p *Parker) run() {
	defer close(p.done)
	evs := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// Cannot happen with a valid epoll fd; wake everyone rather
			// than leave them parked forever.
			p.shutdown(true)
			return
		}
		for i := range n {
			tok := token(&evs[i])
			if tok == wakeToken {
				p.shutdown(false)
				return
			}
			p.mu.Lock()
			w, ok := p.waits[tok]
			delete(p.waits, tok)
			p.mu.Unlock()
			if ok {
				p.forget(w.rc)
				w.fn()
			}
		}
	}
}

// shutdown closes the Parker's descriptors; with wake, every wait's fn runs.
func (p *Parker) shutdown(wake bool) {
	p.mu.Lock()
	p.closed = true
	waits := p.waits
	p.waits = nil
	p.mu.Unlock()
	if wake {
		for _, w := range waits {
			w.fn()
		}
	}
	unix.Close(p.wakefd)
	unix.Close(p.epfd)
}

// setToken and token store a uint64 in an event's data (the Fd and Pad
// fields of x/sys/unix's EpollEvent are its 64 bits).
func setToken(ev *unix.EpollEvent, tok uint64) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
