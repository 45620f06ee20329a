//go:build unix

package host

import "syscall"

// pollsSockets: socketState can tell a failed socket here, so a source
// nobody reads (a deferred half-close, a paused source) that nothing else
// watches is polled (awaitSource).
const pollsSockets = true

// pendingError returns the pending error of socket fd (SO_ERROR), if any;
// reading it clears it.
func pendingError(fd uintptr) error {
	soErr, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	switch {
	case err != nil:
		return err
	case soErr != 0:
		return syscall.Errno(soErr)
	}
	return nil
}
