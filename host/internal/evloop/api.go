package evloop

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"
)

// ErrClosed is the cause given to connections finished by [Loop.Close], and
// the error of calls made on a closed loop.
var ErrClosed = errors.New("loop closed")

// ErrNotSupported is returned by [New] on platforms without epoll.
var ErrNotSupported = errors.New("evloop: not supported on this platform")

// errAborted is the cause used by [Loop.Abort] when it is given none.
var errAborted = errors.New("connection aborted")

// PeerError is a failed operation on one of a connection's sockets (a
// reset by that peer, most often), as Stats.Err reports it.
type PeerError struct {
	// Client is true for the client's socket, false for the target's.
	Client bool
	// Op is the operation: "read", "write", "shutdown" or "socket" (an
	// error the socket reported by itself).
	Op  string
	Err error
}

// Error names the peer and the operation that failed, then the error.
func (e *PeerError) Error() string {
	peer := "server"
	if e.Client {
		peer = "client"
	}
	return peer + " " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the system call's error.
func (e *PeerError) Unwrap() error { return e.Err }

// Acceptor is implemented by the caller, one per listener. Its methods run
// on the loop thread and must not block.
type Acceptor interface {
	// Admit is asked before each accept (also before the accept that finds
	// the backlog empty). false means the listener is at its connection
	// cap: the loop stops polling the listener (clients wait in the kernel
	// backlog) until Listener.Resume is called.
	Admit() bool
	// Accepted is called with each accepted connection (a non-blocking,
	// close-on-exec fd). It returns the plan for it. If the plan is nil the
	// caller has taken the fd (e.g. to serve it on goroutines through
	// os.NewFile and net.FileConn) and the loop forgets it.
	Accepted(fd int, peer netip.AddrPort) *Plan
}

// Unadmitter is an Acceptor whose Admit takes something (a slot under a
// connection cap) that must be given back when the accept that followed
// found no connection: the loop then calls Unadmit once.
type Unadmitter interface {
	Unadmit()
}

// Plan says how the loop forwards one connection.
type Plan struct {
	// Target is dialled with a non-blocking connect (IPv4 or IPv6; an
	// IPv6 zone is not supported).
	Target netip.AddrPort
	// DialTimeout bounds the connect; it must be > 0 (a value <= 0 is
	// replaced by 10s).
	DialTimeout time.Duration
	// IdleTimeout, if > 0, closes both sides with a reset when no byte has
	// moved in either direction for this long. 0 means no idle timeout.
	IdleTimeout time.Duration
	// Done is called once, on the loop thread, when the connection is
	// finished (both fds closed), with what happened. It must not block.
	// It may be nil.
	Done func(Stats)
	// Owner is opaque to the loop: [Loop.Each] gives it back with the
	// connection's figures so far.
	Owner any
	// Chain, when set, sees the bytes of the directions Filtered names (see
	// [Chain]); the other directions are forwarded as without it.
	Chain Chain
	// Filtered names the directions (index 0: client -> server) whose
	// chunks go through Chain. Without a Chain it is ignored.
	Filtered [2]bool
	// Read and Written, when set, are kept equal to the connection's
	// Stats.Read and Stats.Written as bytes move (atomic adds), so another
	// goroutine can read the figures of an open connection.
	Read, Written *[2]atomic.Int64
	// Paused, when set, stops the reads of a filtered side while its
	// value is not zero (the filters that paused it, as the caller counts
	// them): nothing more is read from that socket (its receive buffer
	// fills and TCP stops the sender), its end of stream is not seen, and
	// a reset is. Once the connection is closing (Output.Close) it is read,
	// and dropped, whatever the pause. Whoever sets a side back to zero
	// calls Output.Wake.
	Paused *[2]atomic.Uint64
}

// Chain is what a connection's filters do, called on the loop thread: it
// is given the bytes read and says what to write, through the connection's
// [Output]. Its methods must return promptly (every connection of the loop
// waits meanwhile) and must not call the Loop's waiting methods. An error
// ends the connection with a reset and becomes Stats.Err.
type Chain interface {
	// Open is called once, when the connection is accepted, before the
	// dial. Writes toward the client go at once; the Chain must not write
	// toward the server before Connected. If it calls Output.Close the
	// target is never dialled.
	Open(o *Output) error
	// Connected is called once the target is connected.
	Connected(o *Output) error
	// Data is called with each chunk read from side from (0: the client),
	// in a filtered direction. b is the loop's buffer: valid only during
	// the call.
	Data(from int, b []byte, o *Output) error
	// End is called when side from half-closed, in a filtered direction.
	// The FIN is not passed on by itself: Output.CloseWrite does that.
	End(from int, o *Output) error
	// Timer is called when the timer armed by Output.SetTimer fires.
	Timer(o *Output) error
}

// Reason says how a connection ended.
type Reason uint8

const (
	// Ended: both directions ended with a FIN (Err is nil).
	Ended Reason = iota
	// DialFailed: the target could not be reached (refused, timed out).
	DialFailed
	// IdleTimeout: no byte moved for the plan's IdleTimeout.
	IdleTimeout
	// Aborted: Loop.Abort or Loop.Close.
	Aborted
	// Failed: a socket error or a reset from either peer (Err is a
	// *PeerError), or the Chain failed: a callback's error, or an Output
	// it misused or overfilled (more than maxQueued bytes for a peer that
	// does not read them).
	Failed
)

// Stats describes a finished connection.
type Stats struct {
	// Read counts bytes read from each peer and Written bytes written to
	// each peer; index 0 is client->server, index 1 server->client (so
	// Read[0] is read from the client and Written[0] written to the server).
	Read, Written [2]int64
	// Reason classifies the end; Err says more.
	Reason Reason
	// ServerFINFirst: the server's FIN came before the client's (or the
	// client's never came); meaningful when Reason is Ended.
	ServerFINFirst bool
	// Connected reports that the dial of the target succeeded;
	// ConnectTime is how long it took, on the loop's clock (read once per
	// wake-up, so it includes the wait for the loop's turn).
	Connected   bool
	ConnectTime time.Duration
	// Err is nil for an orderly close (both directions ended with a FIN);
	// otherwise it says why, e.g. "dial 1.2.3.4:5: connection refused",
	// "idle for 2s", "client read: connection reset by peer",
	// "loop closed". Timeouts wrap os.ErrDeadlineExceeded, socket errors
	// wrap their syscall.Errno.
	Err error
}
