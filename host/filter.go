package host

import (
	"errors"
	"net"
)

// Direction names one of the two byte streams of a connection.
type Direction uint8

const (
	// ClientToServer is the stream read from the client and written to the target.
	ClientToServer Direction = 0
	// ServerToClient is the stream read from the target and written to the client.
	ServerToClient Direction = 1
)

// String returns "client -> server" or "server -> client".
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client -> server"
	case ServerToClient:
		return "server -> client"
	}
	return "invalid direction"
}

// Reverse returns the other direction.
func (d Direction) Reverse() Direction { return d ^ 1 }

// Directions says which streams a [Link] sees. The zero value is [Both].
type Directions uint8

const (
	// Both attaches a hook to both streams (the zero value).
	Both Directions = 0
	// OnlyClientToServer attaches a hook to the client -> server stream only.
	OnlyClientToServer Directions = 1
	// OnlyServerToClient attaches a hook to the server -> client stream only.
	OnlyServerToClient Directions = 2
)

// Has reports whether d includes the stream dir.
func (d Directions) Has(dir Direction) bool {
	switch d {
	case Both:
		return true
	case OnlyClientToServer:
		return dir == ClientToServer
	case OnlyServerToClient:
		return dir == ServerToClient
	}
	return false
}

// String returns "both", "client_to_server" or "server_to_client".
func (d Directions) String() string {
	switch d {
	case Both:
		return "both"
	case OnlyClientToServer:
		return "client_to_server"
	case OnlyServerToClient:
		return "server_to_client"
	}
	return "invalid"
}

// ConnInfo describes one proxied connection. Hooks must treat it as read-only.
type ConnInfo struct {
	// ID is unique within a Proxy and increases from 1.
	ID uint64
	// Route is the name of the route that accepted the connection.
	Route string
	// Client is the client's address, as the listener saw it, or as a
	// trusted PROXY header names it (Route.AcceptProxy).
	Client net.Addr
	// Listen is the local address the client connected to, or the
	// destination a trusted PROXY header names.
	Listen net.Addr
	// Target is the address the tunnel dials for this connection.
	Target string
	// TLS describes the client's TLS session on a route that terminates
	// TLS (Route.TLS), or only the ServerName on a route chosen by
	// Route.ServerNames; nil otherwise.
	TLS *TLSInfo
}

// TLSInfo is what a connection's TLS session with the client established.
type TLSInfo struct {
	// ServerName is the name the client asked for (SNI); empty if none.
	ServerName string
	// ALPN is the negotiated application protocol; empty if none.
	ALPN string
	// Version is the TLS version, e.g. tls.VersionTLS13; zero when only
	// the ClientHello was read (ServerNames routing).
	Version uint16
	// PeerSubject is the client certificate's subject (mutual TLS); empty
	// without one.
	PeerSubject string
	// PeerDNS and PeerURIs are the client certificate's DNS and URI SANs.
	PeerDNS, PeerURIs []string
	// Verified is true when the client presented a certificate that was
	// verified against the route's client CAs.
	Verified bool
}

// A Hook sees every connection of a route. It is the factory of per-connection
// [Filter]s: Open is called once per accepted connection, before the target is
// dialled, and may be called from many goroutines at once.
//
// The Proxy never closes a Hook: its maker does, for instance from
// [Route].OnRelease.
type Hook interface {
	// Open returns the filter for one connection. An error refuses the
	// connection: the client is closed and the target is never dialled.
	// So does a nil Filter with a nil error (return PassThrough{} to leave
	// a connection alone) and a panic (see [PanicError]).
	Open(info *ConnInfo) (Filter, error)
}

// An InlineHook is a [Hook] whose filters never block: each callback does
// its work and returns, without waiting for I/O, for another connection,
// or for a lock held across callbacks. Inline reports whether that holds
// (a plugin running guests that no deadline cuts short says no).
//
// A route whose every link is inline, with an IP address as its target and
// no TLS, PROXY header, server names or late dial, runs on an event loop of
// its own: one goroutine reads, filters and writes for all of the route's
// connections, as the loop of routes without hooks does, instead of two
// goroutines per connection. Its filters' callbacks, timers included, then
// run one at a time on that goroutine: a filter that blocks delays every
// connection of its route, and no other route's.
type InlineHook interface {
	Hook
	Inline() bool
}

// A Filter handles the traffic of one connection. The Proxy never calls the
// methods of one Filter concurrently, so a Filter needs no locking of its own
// state. A returned error aborts the connection (both sockets are closed) and
// is logged with the connection; so does a panic in any method, recovered
// as a [*PanicError] and logged with its stack: one filter's bug ends its
// own connection, not the process.
//
// Embed [PassThrough] to get defaults that forward everything unchanged.
type Filter interface {
	// Opened is called once, before the target is dialled, and before the
	// filter's first Data: the links' Opened run in chain order, except
	// that a link reached by bytes an earlier link sends from its own
	// Opened has its Opened called first (so a filter that sends from
	// Opened may get Data, re-entrantly, before its Opened returns). If
	// one fails, the connection is refused and no later link opens; nor
	// does one after a link that closed the connection here ([Stream.Close]).
	// Bytes sent here are delivered once the connection is up.
	Opened(s *Stream) error
	// Data is called for each chunk that reaches this filter in direction
	// dir. The chunk is only valid during the call: keep a copy to hold it.
	// Pass it on with s.Forward(dir, chunk) (or s.Send, which copies it, if
	// the filter changes the chunk afterwards), rewrite it by sending other
	// bytes, drop it by sending nothing.
	Data(dir Direction, chunk []byte, s *Stream) error
	// End is called when the stream dir ends (the sender half-closed). Held
	// bytes may still be sent. After every filter's End the write side of
	// the destination is closed.
	End(dir Direction, s *Stream) error
	// Closed is called once when the connection is gone; nothing can be sent.
	Closed()
}

// A DialFilter is a Filter told when the target is connected: the host
// calls Dialled once, after the dial succeeded and before what the chain
// sent toward the target before it goes, with [Stream.TargetAddr] set (a
// host name resolved). It runs one at a time with the other callbacks. An
// error closes the connection, counted filter_error: a filter may refuse a
// target by the address it resolved to. A capture draws the target's
// handshake then, not at the first byte. It is not called when the dial
// fails.
type DialFilter interface {
	Filter
	Dialled(s *Stream) error
}

// An EndFilter is a Filter told how its connection ended: the host calls
// ClosedWith in place of Closed. A capture draws a reset from the peer that
// sent it, say, or a filter counts its connections by reason.
type EndFilter interface {
	Filter
	// ClosedWith is called once when the connection is gone, with how it
	// ended; nothing can be sent.
	ClosedWith(e End)
}

// End is how a connection ended, as [EndFilter.ClosedWith] is told.
type End struct {
	// Reason is the reason of the connection's close log line:
	// "client_eof", "server_eof", "filter_close", "filter_error",
	// "refused", "dial_failed", "idle_timeout", "reset", "shutdown", ...
	Reason string
	// Err is what ended the connection; nil for an orderly end.
	Err error
	// ClientFailed and TargetFailed say which socket failed when Reason is
	// "reset": a read or write on it failed, most often because that peer
	// reset the connection.
	ClientFailed, TargetFailed bool
}

// PassThrough is a Filter that forwards everything unchanged. Embed it in a
// filter and override only the methods you need.
type PassThrough struct{}

// Opened does nothing.
func (PassThrough) Opened(*Stream) error { return nil }

// Data forwards the chunk unchanged.
func (PassThrough) Data(dir Direction, chunk []byte, s *Stream) error {
	return s.Forward(dir, chunk)
}

// End does nothing: the host closes the destination's write side itself.
func (PassThrough) End(Direction, *Stream) error { return nil }

// Closed does nothing.
func (PassThrough) Closed() {}

// ChunkFunc is the simplest hook: a function that sees every chunk and
// returns the bytes to forward in its place (the same slice, other bytes, or
// nothing to drop the chunk). It must not keep chunk after returning; the
// returned slice is copied before the function is called again.
type ChunkFunc func(info *ConnInfo, dir Direction, chunk []byte) ([]byte, error)

// Open implements [Hook].
func (f ChunkFunc) Open(info *ConnInfo) (Filter, error) {
	return &chunkFilter{f: f, info: info}, nil
}

type chunkFilter struct {
	PassThrough
	f    ChunkFunc
	info *ConnInfo
}

func (c *chunkFilter) Data(dir Direction, chunk []byte, s *Stream) error {
	out, err := c.f(c.info, dir, chunk)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return nil
	}
	// The function keeps neither chunk nor out: what of chunk it returns
	// can be written from the chunk itself.
	return s.Forward(dir, out)
}

// Errors returned by [Stream] methods.
var (
	// ErrWriteClosed: the destination of that direction was already half-closed or the connection closed.
	ErrWriteClosed = errors.New("stream already closed in that direction")
	// ErrNotAttached: no filter is attached to that direction, so its bytes
	// take the kernel's splice path and cannot be interleaved with filter output.
	ErrNotAttached = errors.New("no filter is attached to that direction (it is spliced by the kernel); attach the filter to both directions to write toward it")
	// ErrSendDepth: filters kept answering each other without end.
	ErrSendDepth = errors.New("filters sent to each other more than 64 levels deep")
)

// A Link attaches a Hook to a route, on both streams or one.
type Link struct {
	// Name identifies the hook in logs (for example the plugin's name).
	Name string
	// Hook makes the per-connection filters.
	Hook Hook
	// Directions selects the streams the hook sees; zero means both.
	Directions Directions
}
