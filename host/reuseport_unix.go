//go:build unix

package host

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT on a listening socket before it is bound
// (Route.ReusePort).
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// listenControl prepares a route's listening socket before it listens:
// TCP_NODELAY, which the sockets it accepts inherit as their handshake
// completes (the event loop makes no system call of its own for it, and a
// client that connects before the loop takes the listener must have it
// too), and SO_REUSEPORT when reuse is set.
func listenControl(reuse bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if reuse {
			if err := reusePort(network, address, c); err != nil {
				return err
			}
		}
		// An error here costs only Nagle's delay: Go's accept path and
		// the loop's Adopt set the option themselves.
		c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) })
		return nil
	}
}
