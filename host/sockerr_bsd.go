//go:build unix && !linux

package host

import "syscall"

// socketState tells, without blocking, whether rc's socket has failed: its
// pending error (SO_ERROR), which BSD-derived kernels set for hard errors
// only (soft ones stay out of so_error; Linux differs, sockerr_linux.go).
// It never reports a hang-up. A closed socket reports nothing: teardown
// ends whatever waits on it.
func socketState(rc syscall.RawConn) (hup bool, err error) {
	if cerr := rc.Control(func(fd uintptr) { err = pendingError(fd) }); cerr != nil {
		return false, nil
	}
	return false, err
}
