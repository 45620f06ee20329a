//go:build unix && !linux

package host

import "syscall"

// pollsSockets: socketState can tell a failed socket here, so a deferred
// half-close nothing else watches is polled (awaitDeferred).
const pollsSockets = true

// socketState tells, without blocking, whether rc's socket has failed: its
// pending error (SO_ERROR), which BSD-derived kernels set for hard errors
// only (soft ones stay out of so_error; Linux differs, sockerr_linux.go).
// It never reports a hang-up. A closed socket reports nothing: teardown
// ends whatever waits on it.
func socketState(rc syscall.RawConn) (hup bool, err error) {
	var soErr int
	var gerr error
	if cerr := rc.Control(func(fd uintptr) {
		soErr, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	}); cerr != nil {
		return false, nil
	}
	switch {
	case gerr != nil:
		return false, gerr
	case soErr != 0:
		return false, syscall.Errno(soErr)
	}
	return false, nil
}
