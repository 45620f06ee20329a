package sockq

import (
	"time"

	"golang.org/x/sys/unix"
)

// sentAgo is how long ago fd's kernel last sent data (TCP_INFO's
// tcpi_last_data_sent). A peer that stopped reading gets window probes,
// which carry no data; a peer that is gone gets retransmissions, which
// do: while the retransmission timer has fired (tcpi_retransmits > 0),
// the data sent counts for nothing, and ok is false.
func sentAgo(fd int) (time.Duration, bool) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.Retransmits > 0 {
		return 0, false
	}
	return time.Duration(info.Last_data_sent) * time.Millisecond, true
}
