package sockq

import (
	"time"

	"golang.org/x/sys/unix"
)

// sentAgo is how long ago fd's kernel last sent data (TCP_INFO's
// tcpi_last_data_sent). A peer that stopped reading gets window probes,
// which carry no data; a peer that is gone gets retransmissions, which
// do: while the retransmission timer has fired (tcpi_retransmits > 0),
// the data sent counts for nothing, and ok is false. One stuck peer is
// missed: one that shrinks its window to zero over unacknowledged data
// (tcp_shrink_window, some other stacks) gets that data again at every
// back-off, up to every 120 s, without tcpi_retransmits moving. Skipping
// sockets in back-off with data unacknowledged would catch it, but a slow
// reader's sockets are in back-off between its reads, and the idle timeout
// would cut it off again.
func sentAgo(fd int) (time.Duration, bool) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.Retransmits > 0 {
		return 0, false
	}
	return time.Duration(info.Last_data_sent) * time.Millisecond, true
}
