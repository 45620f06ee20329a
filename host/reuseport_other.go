//go:build !unix

package host

import (
	"errors"
	"syscall"
)

// reusePort: SO_REUSEPORT is not available here.
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("reuse_port is not supported on this system")
}

// listenControl: only SO_REUSEPORT matters here, and it is not available.
func listenControl(reuse bool) func(network, address string, c syscall.RawConn) error {
	if reuse {
		return reusePort
	}
	return nil
}
