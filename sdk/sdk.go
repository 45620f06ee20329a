package sdk

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"unsafe"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Direction names one of the two byte streams of a connection.
type Direction int32

const (
	// ClientToServer is the stream from the client to the target.
	ClientToServer Direction = abi.DirClientToServer
	// ServerToClient is the stream from the target back to the client.
	ServerToClient Direction = abi.DirServerToClient
)

// String returns "client -> server" or "server -> client".
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client -> server"
	case ServerToClient:
		return "server -> client"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// Reverse returns the other direction: the way back to the sender.
func (d Direction) Reverse() Direction { return d ^ 1 }

// Action is what [Handler.OnData] decides about the bytes it was shown.
type Action int32

const (
	// Forward passes the bytes on unchanged, after anything the handler sent
	// in the same direction during the call.
	Forward Action = abi.ActionForward
	// Drop passes none of the bytes on. What the handler sent during the
	// call stands, so Drop plus [Conn.Send] is how a handler rewrites.
	Drop Action = abi.ActionDrop
	// Hold keeps the bytes on the host, which shows them again followed by
	// the next chunk of the same direction. It is the way to wait for more
	// bytes (a whole line, a whole frame) without copying them: at most the
	// input buffer's size ([SetBufferSize]) can be held, so a handler must
	// not hold a buffer that is already full. Held bytes come back only
	// with the next OnData of their direction: OnTimer cannot release
	// them, and CloseWrite or Close drops them. To pass bytes on later
	// from OnTimer ("a full line or 50 ms"), copy them, return Drop and
	// Send them from OnTimer.
	Hold Action = abi.ActionHold
)

// String returns "forward", "drop" or "hold".
func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case Drop:
		return "drop"
	case Hold:
		return "hold"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Level is the severity of a log message, numbered as in log/slog.
type Level int32

// Log levels.
const (
	LevelDebug Level = abi.LogDebug
	LevelInfo  Level = abi.LogInfo
	LevelWarn  Level = abi.LogWarn
	LevelError Level = abi.LogError
)

// A Factory makes the plugin from its configuration: the bytes of the
// route's config block, JSON-encoded by the host (empty when the route has
// none). A returned error rejects the configuration; its text is what the
// user sees, so say what is wrong and where (for example
// `rule 2: "from" is empty`). [DecodeConfig] does strict JSON decoding.
type Factory func(config []byte) (Plugin, error)

// A Plugin is one configured plugin instance. The host may run several
// instances of a plugin, and one instance may serve many connections (one
// call at a time), so per-connection state belongs in the [Handler] that
// NewConn returns, not in the Plugin.
type Plugin interface {
	// NewConn is called when a connection opens, before the target is
	// dialled. It returns the handler of that connection; an error refuses
	// the connection (the reason is logged). c.Send may already be used, for
	// example to greet the client.
	NewConn(c *Conn) (Handler, error)
}

// A Handler sees the traffic of a connection.
type Handler interface {
	// OnData is called with each chunk of direction dir. data is the
	// instance's input buffer and is valid only during the call; copy what
	// must be kept. end reports that the stream ended after these bytes
	// (data may then be empty): it is the last call for dir, the time to
	// flush anything kept. The returned [Action] says what happens to data.
	OnData(c *Conn, dir Direction, data []byte, end bool) Action
	// OnClose is called once when the connection is gone. Nothing can be
	// sent any more.
	OnClose(c *Conn)
}

// DefaultHandler forwards everything. Embed it in a handler and override
// only the methods you need.
type DefaultHandler struct{}

// OnData returns [Forward].
func (DefaultHandler) OnData(*Conn, Direction, []byte, bool) Action { return Forward }

// OnClose does nothing.
func (DefaultHandler) OnClose(*Conn) {}

// Shared returns a Plugin that uses h for every connection: the plugin for
// handlers that keep no per-connection state.
func Shared(h Handler) Plugin { return shared{h} }

type shared struct{ h Handler }

func (s shared) NewConn(*Conn) (Handler, error) { return s.h, nil }

var registered Factory

// Register sets the plugin's factory. Call it once, from func init of the
// plugin's package main:
//
//	func init() { sdk.Register(newPlugin) }
//	func main() {}
//
// The host calls the factory once per instance with the configuration.
func Register(f Factory) {
	if registered != nil {
		panic("sdk: Register called twice")
	}
	registered = f
}

// Errors returned by [Conn] methods, one per ABI status code.
var (
	// ErrBadArgument: an argument the host refused; the method's doc says
	// which (an unknown direction, an address that is not host:port or is
	// the route's own, a malformed tag or state key, ...).
	ErrBadArgument = errors.New("sdk: bad argument (see the method's doc: an unknown direction, a target that is not host:port or is the route's own listen address, a malformed key, ...)")
	// ErrClosed: that direction, or the connection, is already closed.
	ErrClosed = errors.New("sdk: already closed")
	// ErrNotAllowed: not called from a callback of this connection, called
	// from OnClose (the connection is gone: nothing can be sent, closed,
	// tagged or timed), or the direction is not routed through the plugin
	// (spliced by the host).
	ErrNotAllowed = errors.New("sdk: not allowed here (outside a callback of this connection, in OnClose, or the direction is not routed through the plugin)")
	// ErrTooLarge: the host refused a value that is too large.
	ErrTooLarge = errors.New("sdk: too large")
)

func statusErr(st int32) error {
	switch st {
	case abi.StatusOK:
		return nil
	case abi.StatusBadArgument:
		return ErrBadArgument
	case abi.StatusClosed:
		return ErrClosed
	case abi.StatusNotAllowed:
		return ErrNotAllowed
	case abi.StatusTooLarge:
		return ErrTooLarge
	}
	return errors.New("sdk: unknown host status " + strconv.Itoa(int(st)))
}

// Conn is one proxied connection. Its methods act on the connection only
// while one of its callbacks runs (NewConn, OnData, OnTimer, OnClose);
// elsewhere they return [ErrNotAllowed]. In OnClose the connection is gone:
// Info, TLS and Tag still answer, and Send, CloseWrite, Close, SetTag,
// SetTimer, SetTarget, DeferEnd, PauseRead and ResumeRead return
// [ErrNotAllowed].
type Conn struct {
	id   uint64
	inst *instance
	h    Handler
	info *Info
}

// Info describes a connection.
type Info struct {
	// Route is the name of the route that accepted the connection.
	Route string
	// Client is the client's address, host:port.
	Client string
	// Target is the address the tunnel dials, host:port.
	Target string
	// Listen is the local address the client connected to.
	Listen string
}

// TLS describes the client's TLS session, on a route that terminates TLS
// (and, for ServerName alone, on a route chosen by server name); every
// field is empty otherwise.
type TLS struct {
	// ServerName is the name the client asked for (SNI).
	ServerName string
	// ALPN is the negotiated application protocol.
	ALPN string
	// Version is "1.2" or "1.3".
	Version string
	// PeerSubject is the client certificate's subject (mutual TLS), and
	// PeerSANs its DNS and URI SANs, comma-separated.
	PeerSubject, PeerSANs string
	// PeerVerified is true when the client's certificate was verified.
	PeerVerified bool
}

// TLS returns the client's TLS session details. The host is asked at each
// call, which must come from a callback of c.
func (c *Conn) TLS() TLS {
	if !c.current() {
		return TLS{}
	}
	in := c.inst
	return TLS{
		ServerName:   in.connInfo(abi.InfoServerName),
		ALPN:         in.connInfo(abi.InfoALPN),
		Version:      in.connInfo(abi.InfoTLSVersion),
		PeerSubject:  in.connInfo(abi.InfoPeerSubject),
		PeerSANs:     in.connInfo(abi.InfoPeerNames),
		PeerVerified: in.connInfo(abi.InfoPeerVerified) == "true",
	}
}

// ID returns the connection's id, unique within the tunnel process.
func (c *Conn) ID() uint64 { return c.id }

func (c *Conn) current() bool { return c.inst != nil && c.inst.cur == c }

// Send passes b on in direction dir from the plugin's place in the route's
// chain. Sending in the direction of the chunk being handled inserts bytes
// into that stream; sending in the reverse direction answers the sender.
// b is copied before Send returns. The bytes sent and logged during one
// callback are bounded by the host (the plugin's output budget, 4 MiB by
// default): going past it is a failure of the instance, not an error.
func (c *Conn) Send(dir Direction, b []byte) error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.Send(int32(dir), b))
}

// CloseWrite half-closes the stream dir once the bytes already sent in it
// are written: its destination reads end of stream.
func (c *Conn) CloseWrite(dir Direction) error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.CloseWrite(int32(dir)))
}

// Close closes the connection once the bytes already sent are written.
func (c *Conn) Close() error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.Close())
}

// Info returns the route and addresses of the connection. The host is asked
// once, at the first call, which must come from a callback of c.
func (c *Conn) Info() Info {
	if c.info == nil {
		if !c.current() {
			return Info{}
		}
		c.info = &Info{
			Route:  c.inst.connInfo(abi.InfoRoute),
			Client: c.inst.connInfo(abi.InfoClient),
			Target: c.inst.connInfo(abi.InfoTarget),
			Listen: c.inst.connInfo(abi.InfoListen),
		}
	}
	return *c.info
}

// Log writes msg to the host's log, attributed to the plugin (and to the
// connection when called from one of its callbacks).
func Log(level Level, msg string) {
	if active != nil {
		// The host only reads the bytes: no copy needed.
		active.host.Log(int32(level), unsafe.Slice(unsafe.StringData(msg), len(msg)))
	}
}

// LogBytes is [Log] for a message in a byte slice, for callers that format
// into a reused buffer and want to allocate nothing.
func LogBytes(level Level, msg []byte) {
	if active != nil {
		active.host.Log(int32(level), msg)
	}
}

// Logf formats like fmt.Sprintf and writes the result to the host's log.
// It links package fmt into the plugin, about 0.75 MB of WebAssembly that
// the host compiles at every start; [Log] with string concatenation (and
// strconv for numbers) does not, and a plugin that never calls Logf does
// not link fmt.
func Logf(level Level, format string, args ...any) {
	if active != nil {
		Log(level, fmt.Sprintf(format, args...))
	}
}

// Stdout returns the plugin's standard output. The host discards what is
// written to it unless the route grants the plugin stdout.
func Stdout() io.Writer {
	if active != nil {
		return active.host.Stdout()
	}
	return io.Discard
}
