package host

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
)

// TestInlineReason: an inline connection that failed is counted after
// what failed. A system call of the loop's own (epoll_ctl out of memory
// when the connection was registered) is a reset, as the goroutine engine
// counts a failed system call; only an error that came from the filters'
// output is filter_error.
func TestInlineReason(t *testing.T) {
	for _, tc := range []struct {
		st   evloop.Stats
		want closeReason
	}{
		{evloop.Stats{Reason: evloop.Failed, Err: fmt.Errorf("client: %w", unix.ENOMEM)}, reasonReset},
		{evloop.Stats{Reason: evloop.Failed, Err: &evloop.PeerError{Client: true, Op: "read", Err: unix.ECONNRESET}}, reasonReset},
		{evloop.Stats{Reason: evloop.Failed, Err: errors.New("67108865 bytes queued for the client, which does not read them")}, reasonFilterError},
		{evloop.Stats{Reason: evloop.DialFailed, Err: unix.ECONNREFUSED}, reasonDialFailed},
		{evloop.Stats{Reason: evloop.Ended, ServerFINFirst: true}, reasonServerEOF},
	} {
		if got := inlineReason(tc.st); got != tc.want {
			t.Errorf("inlineReason(%v, %v) = %v, want %v", tc.st.Reason, tc.st.Err, got, tc.want)
		}
	}
}
