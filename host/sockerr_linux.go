package host

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketState tells, without blocking, what the Parker's watch of rc's
// socket would (Linux): failed (POLLERR) with its pending error, or hung
// up both ways (POLLHUP) without one. An error is read only on POLLERR: Linux's
// SO_ERROR also reports a soft error (an ICMP unreachable TCP retries
// past) on a healthy socket, which must not end a connection. A closed
// socket reports neither: teardown ends whatever waits on it.
func socketState(rc syscall.RawConn) (hup bool, err error) {
	var revents int16
	if cerr := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		for {
			if _, perr := unix.Poll(fds, 0); perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
		if revents&unix.POLLERR != 0 {
			err = pendingError(fd)
		}
	}); cerr != nil {
		return false, nil
	}
	return revents&(unix.POLLHUP|unix.POLLERR) != 0, err
}
