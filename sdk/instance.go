package sdk

import (
	"github.com/tunnelwasm/tunnel/sdk/abi"
	"github.com/tunnelwasm/tunnel/sdk/internal/guest"
)

// DefaultBufferSize is the size of the input buffer unless [SetBufferSize]
// says otherwise: twice the host's read size, so a held chunk and the next
// one fit together.
const DefaultBufferSize = 64 << 10

var bufferSize = DefaultBufferSize

// SetBufferSize sets the size of the input buffer, the most bytes one
// OnData call sees (larger chunks are split by the host) and so the most a
// handler can [Hold]. Call it from func init, before the host initialises
// the plugin; n below 1 KiB is raised to 1 KiB.
func SetBufferSize(n int) { bufferSize = max(n, 1<<10) }

// active is the instance whose callback is running. A wasm module has one
// instance; the native emulator runs one call at a time across instances.
var active *instance

// instance is the guest-side state of one plugin instance.
type instance struct {
	host    guest.Host
	buf     []byte
	plugin  Plugin
	conns   map[int64]*Conn
	recent  [connSlots]*Conn // a direct-mapped cache of conns, by id
	cur     *Conn            // connection whose callback is running
	scratch [256]byte
}

func init() {
	guest.NewInstance = func(h guest.Host) guest.Instance { return newInstance(h) }
}

func newInstance(h guest.Host) *instance {
	return &instance{host: h, conns: make(map[int64]*Conn)}
}

// connSlots is the size of instance.recent. The host numbers connections
// in the order they open, so up to connSlots connections opened one after
// the other never share a slot, and a lookup is an index and a compare:
// a Go map lookup costs about a third of a no-op call in a wasm guest.
const connSlots = 256

// conn returns the open connection numbered id, or nil.
func (in *instance) conn(id int64) *Conn {
	if c := in.recent[uint64(id)%connSlots]; c != nil && c.id == uint64(id) {
		return c
	}
	return in.conns[id]
}

func (in *instance) enter(c *Conn) func() {
	prevA, prevC := active, in.cur
	active, in.cur = in, c
	return func() { active, in.cur = prevA, prevC }
}

func (in *instance) reject(msg string) int32 {
	in.host.ConfigError([]byte(msg))
	return abi.Reject
}

// Init implements tunnel_init.
func (in *instance) Init() int32 {
	defer in.enter(nil)()
	in.buf = make([]byte, bufferSize)
	if st := in.host.InputBuffer(in.buf); st != abi.StatusOK {
		return in.reject("sdk: the host refused the input buffer: " + statusErr(st).Error())
	}
	if registered == nil {
		return in.reject("sdk: no plugin registered: call sdk.Register from func init of package main")
	}
	var cfg []byte
	if n := in.host.Config(nil); n > 0 {
		cfg = make([]byte, n)
		if m := in.host.Config(cfg); m != n {
			return in.reject("sdk: the configuration changed size while being read")
		}
	}
	p, err := registered(cfg)
	if err == nil && p == nil {
		return in.reject("sdk: the plugin's factory returned no plugin and no error")
	}
	if err != nil {
		return in.reject(err.Error())
	}
	in.plugin = p
	return abi.OK
}

// OnOpen implements tunnel_on_open.
func (in *instance) OnOpen(conn int64) int32 {
	c := &Conn{id: uint64(conn), inst: in}
	defer in.enter(c)()
	if in.plugin == nil {
		return abi.Reject
	}
	h, err := in.plugin.NewConn(c)
	if err != nil {
		Log(LevelWarn, "connection refused: "+err.Error())
		return abi.Reject
	}
	if h == nil {
		h = DefaultHandler{}
	}
	c.h = h
	in.conns[conn] = c
	in.recent[uint64(conn)%connSlots] = c
	return abi.OK
}

// OnData implements tunnel_on_data.
func (in *instance) OnData(conn int64, dir, n, end int32) int32 {
	c := in.conn(conn)
	if c == nil || n < 0 || int(n) > len(in.buf) {
		// Unknown connection (refused, or the host is confused): forward,
		// the host's bookkeeping wins.
		return abi.ActionForward
	}
	prevA, prevC := active, in.cur
	active, in.cur = in, c
	a := c.h.OnData(c, Direction(dir), in.buf[:n], end != 0)
	active, in.cur = prevA, prevC
	return int32(a)
}

// OnClose implements tunnel_on_close.
func (in *instance) OnClose(conn int64) {
	c := in.conn(conn)
	if c == nil {
		return
	}
	delete(in.conns, conn)
	if slot := &in.recent[uint64(conn)%connSlots]; *slot == c {
		*slot = nil
	}
	defer in.enter(c)()
	c.h.OnClose(c)
}

// OnTimer implements tunnel_on_timer: calls the handler's OnTimer, or logs
// that the handler has none.
func (in *instance) OnTimer(conn int64) int32 {
	c := in.conn(conn)
	if c == nil {
		return abi.OK
	}
	defer in.enter(c)()
	if th, ok := c.h.(TimerHandler); ok {
		th.OnTimer(c)
	} else {
		// Armed from NewConn, before the handler was known.
		Log(LevelWarn, ErrNoTimer.Error())
	}
	return abi.OK
}

// connInfo asks the host for one value of the current connection.
func (in *instance) connInfo(key int32) string {
	n := in.host.ConnInfo(key, in.scratch[:])
	if n < 0 {
		return ""
	}
	if int(n) <= len(in.scratch) {
		return string(in.scratch[:n])
	}
	b := make([]byte, n)
	if m := in.host.ConnInfo(key, b); m != n {
		return ""
	}
	return string(b)
}
