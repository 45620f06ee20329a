package sdk

import (
	"errors"
	"time"
	"unsafe"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Errors of the ABI v2 calls.
var (
	// ErrNoLateDial: [Conn.SetTarget] on a route that dials its fixed
	// target (the route needs dial = "plugin").
	ErrNoLateDial = errors.New("sdk: the route dials its fixed target (set dial = \"plugin\" on the route to let plugins choose)")
	// ErrAlreadySet: [Conn.SetTarget] after the target was chosen.
	ErrAlreadySet = errors.New("sdk: the target is already chosen")
	// ErrNoTimer: [Conn.SetTimer] on a connection whose handler is not a
	// [TimerHandler] (it has no OnTimer(*sdk.Conn) method): the timer
	// would fire and call nothing.
	ErrNoTimer = errors.New("sdk: the handler has no OnTimer(*sdk.Conn) method (it is not an sdk.TimerHandler), so its timer would call nothing")
)

func statusErr2(st int32) error {
	switch st {
	case abi.StatusNoLateDial:
		return ErrNoLateDial
	case abi.StatusAlreadySet:
		return ErrAlreadySet
	}
	return statusErr(st)
}

// A TimerHandler is a [Handler] with a timer: [Conn.SetTimer] arms it and
// OnTimer is called when it fires. OnTimer may Send, CloseWrite, Close and
// SetTimer again, as OnData may.
type TimerHandler interface {
	Handler
	OnTimer(c *Conn)
}

// Now returns the host's monotonic clock: the time since an arbitrary
// origin, the same for every connection of the process. Only differences
// mean something. In tests under sdktest it is the emulator's fake clock,
// which the test advances. It returns 0 outside the plugin's callbacks.
func Now() time.Duration {
	if active == nil {
		return 0
	}
	return time.Duration(active.host.Now())
}

// SetTimer arms the connection's timer: the handler's OnTimer (it must be
// a [TimerHandler]) is called after d, or as soon as the current callback
// has returned when d <= 0. A connection has one timer: arming it again
// replaces the pending one. Allowed in NewConn, OnData and OnTimer. From
// OnData, a handler that is not a TimerHandler gets [ErrNoTimer]; from
// NewConn, before the handler is known, its timer fires and logs a
// warning instead.
func (c *Conn) SetTimer(d time.Duration) error {
	if !c.current() {
		return ErrNotAllowed
	}
	if c.h != nil {
		if _, ok := c.h.(TimerHandler); !ok {
			return ErrNoTimer
		}
	}
	return statusErr(c.inst.host.SetTimer(int64(c.id), int64(max(d, 0))))
}

// StopTimer disarms the connection's timer, if armed.
func (c *Conn) StopTimer() error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.SetTimer(int64(c.id), -1))
}

// SetTarget chooses the address, host:port, the connection is dialled to,
// on a route with dial = "plugin": the tunnel waits for this choice (from
// NewConn, OnData or OnTimer) before it dials, and holds the bytes the
// chain passes toward the server until then. The first choice wins: later
// calls return [ErrAlreadySet]; with a fixed target, [ErrNoLateDial]; an
// invalid address or the route's own (a loop), [ErrBadArgument].
func (c *Conn) SetTarget(addr string) error {
	if !c.current() {
		return ErrNotAllowed
	}
	st := c.inst.host.SetTarget(int64(c.id), unsafe.Slice(unsafe.StringData(addr), len(addr)))
	if st == abi.StatusOK && c.info != nil {
		c.info.Target = addr
	}
	return statusErr2(st)
}

// SetTag sets the connection's tag key to value (an empty value removes
// it). Tags are shared with the rest of the route's chain ([Conn.Tag]) and
// appear in the connection's close log line as tag.KEY=VALUE. Keys are 1
// to 64 bytes of letters, digits, '.', '_' and '-' (else [ErrBadArgument]);
// values up to 256 bytes and at most 32 tags per connection (else
// [ErrTooLarge]).
func (c *Conn) SetTag(key, value string) error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.SetTag(int64(c.id),
		unsafe.Slice(unsafe.StringData(key), len(key)),
		unsafe.Slice(unsafe.StringData(value), len(value))))
}

// Tag returns the value of the connection's tag key (set by this plugin or
// another link of the chain) and whether it is set. It works in every
// callback of the connection, OnClose included.
func (c *Conn) Tag(key string) (string, bool) {
	if !c.current() {
		return "", false
	}
	k := unsafe.Slice(unsafe.StringData(key), len(key))
	in := c.inst
	n := in.host.Tag(int64(c.id), k, in.scratch[:])
	if n < 0 {
		return "", false
	}
	if int(n) <= len(in.scratch) {
		return string(in.scratch[:n]), true
	}
	b := make([]byte, n)
	if m := in.host.Tag(int64(c.id), k, b); m != n {
		return "", false
	}
	return string(b), true
}

// DeferEnd keeps the stream dir open at its destination after the OnData
// call that reports its end (end == true), the only call where it is
// allowed: the host then half-closes dir only when the handler calls
// [Conn.CloseWrite](dir), typically from OnTimer once the bytes it delays
// are sent, or closes the connection. Without it the destination is
// half-closed as soon as that OnData returns, and later sends toward it
// fail with [ErrClosed]. Elsewhere it returns [ErrNotAllowed].
func (c *Conn) DeferEnd(dir Direction) error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.DeferEnd(int64(c.id), int32(dir)))
}

// PauseRead stops the tunnel reading the source of dir (the client for
// ClientToServer) until [Conn.ResumeRead]: its socket fills and TCP stops
// the sender. A plugin that delays bytes (a rate limit, a slow link)
// pauses their sender while it holds them, so that it slows the sender
// down instead of buffering whatever the sender keeps writing. Meanwhile
// OnData gets nothing more of dir, not its end of stream either (a chunk
// already on its way may still come); the route's idle timeout still runs.
// The pause is the plugin's: dir is read again once every plugin of the
// chain that paused it has resumed it.
// Allowed in NewConn, OnData and OnTimer; [ErrNotAllowed] also when no
// plugin sees dir (the kernel forwards it).
func (c *Conn) PauseRead(dir Direction) error { return c.pauseRead(dir, 1) }

// ResumeRead reads the source of dir again after [Conn.PauseRead]; what
// arrived meanwhile comes in the next OnData calls. If the instance fails
// and the plugin's policy is bypass, the tunnel resumes what it paused.
func (c *Conn) ResumeRead(dir Direction) error { return c.pauseRead(dir, 0) }

func (c *Conn) pauseRead(dir Direction, pause int32) error {
	if !c.current() {
		return ErrNotAllowed
	}
	return statusErr(c.inst.host.PauseRead(int64(c.id), int32(dir), pause))
}
