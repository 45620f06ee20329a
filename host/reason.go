package host

import (
	"errors"
	"net"
	"syscall"
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
	reasonTLS                     // the TLS handshake with the client failed
	reasonNoRoute                 // no route for the client's SNI name, or no ClientHello
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
