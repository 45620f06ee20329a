// Package sockq tells an idle connection from one whose peer is still
// taking the bytes the kernel holds for it. A tunnel writes a transfer
// into its sockets' send buffers in milliseconds and then moves nothing
// itself while a slow reader drains them, megabytes at a time: an idle
// timeout that looked only at the tunnel's own reads and writes reset such
// a connection in the middle of the transfer, discarding what was queued.
package sockq

import "time"

// Quiet returns how long none of the sockets fds has sent data to a peer
// that takes it, ok false when no socket can tell (not Linux, errors):
// the idle check then goes by the tunnel's own reads and writes alone.
// Negative fds are skipped.
func Quiet(fds ...int) (quiet time.Duration, ok bool) {
	for _, fd := range fds {
		if fd < 0 {
			continue
		}
		if ago, sentOK := sentAgo(fd); sentOK && (!ok || ago < quiet) {
			quiet, ok = ago, true
		}
	}
	return quiet, ok
}
