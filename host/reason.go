package host

import (
	"errors"
	"net"
	"syscall"

	"github.com/tunnelwasm/tunnel/host/internal/evloop"
)

// closeReason says why a connection ended, in its close log line
// (reason=…): who closed and why, for an operator reading the log.
type closeReason uint32

const (
	reasonUnset       closeReason = iota
	reasonClientEOF               // orderly: the client half-closed first
	reasonServerEOF               // orderly: the server half-closed first
	reasonFilterClose             // a filter closed it (Stream.Close)
	reasonFilterError             // a filter or plugin failed, or aborted it
	reasonRefused                 // a filter refused it when it opened
	reasonDialFailed              // the target could not be reached
	reasonIdle                    // the idle timeout
	reasonReset                   // a read or write failed: a peer reset it
	reasonShutdown                // the Proxy shut down
	reasonTLS                     // the TLS handshake with the client failed, or its ClientHello could not be read
	reasonNoRoute                 // no route for the client's SNI name, or for a client that does not speak TLS
	reasonProxyHeader             // a PROXY header missing, malformed or from an untrusted peer
)

var reasonNames = [...]string{
	reasonUnset:       "unknown",
	reasonClientEOF:   "client_eof",
	reasonServerEOF:   "server_eof",
	reasonFilterClose: "filter_close",
	reasonFilterError: "filter_error",
	reasonRefused:     "refused",
	reasonDialFailed:  "dial_failed",
	reasonIdle:        "idle_timeout",
	reasonReset:       "reset",
	reasonShutdown:    "shutdown",
	reasonTLS:         "tls",
	reasonNoRoute:     "no_route",
	reasonProxyHeader: "proxy_header",
}

func (r closeReason) String() string { return reasonNames[r] }

// setReason records why the connection ends, unless a reason is already
// recorded: the first cause is the one that counts.
func (c *conn) setReason(r closeReason) { c.td.reason.CompareAndSwap(0, uint32(r)) }

// sawEOF records that dir's source ended, if it is the first to.
func (c *conn) sawEOF(dir Direction) { c.td.eof.CompareAndSwap(0, uint32(dir)+1) }

// closeReason is the connection's reason, inferred when none was recorded:
// an orderly end is named after the side that half-closed first.
func (c *conn) closeReason(failed bool) closeReason {
	if r := closeReason(c.td.reason.Load()); r != reasonUnset {
		return r
	}
	switch {
	case failed:
		return reasonFilterError
	case c.td.eof.Load() == uint32(ServerToClient)+1:
		return reasonServerEOF
	}
	return reasonClientEOF
}

// peerError is a failed read of dir's source or write to its destination,
// as the connection's error: "read client -> server: connection reset by
// peer".
type peerError struct {
	op  string // "read" or "write"
	dir Direction
	err error
}

func (e *peerError) Error() string { return e.op + " " + e.dir.String() + ": " + e.err.Error() }

func (e *peerError) Unwrap() error { return e.err }

// failedPeers tells which of a connection's sockets err says failed.
func failedPeers(err error) (client, target bool) {
	var pe *peerError
	var le *evloop.PeerError
	switch {
	case errors.As(err, &pe):
		client = (pe.op == "read") == (pe.dir == ClientToServer)
		return client, !client
	case errors.As(err, &le):
		return le.Client, !le.Client
	}
	return false, false
}

// end is the End a connection's filters are closed with.
func end(reason closeReason, cause *error) End {
	e := End{Reason: reason.String()}
	if cause != nil {
		e.Err = *cause
		if reason == reasonReset {
			e.ClientFailed, e.TargetFailed = failedPeers(e.Err)
		}
	}
	return e
}

// classify names the cause of a pump's error: a failed system call on a
// socket is a reset; anything else came from a filter.
func classify(err error) closeReason {
	var errno syscall.Errno
	var op *net.OpError
	if errors.As(err, &errno) || errors.As(err, &op) || errors.Is(err, net.ErrClosed) {
		return reasonReset
	}
	return reasonFilterError
}
