package sdktest

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/abi"
	"github.com/tunnelwasm/tunnel/sdk/internal/guest"
)

// Addresses the emulator reports for every connection.
const (
	// EmulatedClient is the client address of emulated connections.
	EmulatedClient = "127.0.0.1:50000"
	// EmulatedListen is the listen address of emulated connections.
	EmulatedListen = "127.0.0.1:8000"
	// EmulatedTarget is the target address of emulated connections.
	EmulatedTarget = "127.0.0.1:9000"
)

// callMu serialises every call into every emulated instance: package sdk
// keeps the instance whose callback runs in a global, as a wasm module does.
var callMu sync.Mutex

// Native is the [Starter] that runs the plugin natively, in this process,
// against the emulated host. The plugin is the one registered with
// sdk.Register (so tests belong to the plugin's package main).
func Native(t testing.TB, opts Options) (Plugin, error) {
	t.Helper()
	if guest.NewInstance == nil {
		t.Fatal("sdktest: package sdk is not initialised")
	}
	p := &emuPlugin{t: t, config: []byte(strings.ReplaceAll(opts.Config, Server, EmulatedTarget)), route: opts.Route,
		lateDial: opts.LateDial, now: emuEpoch}
	if p.route == "" {
		p.route = "test"
	}
	p.inst = guest.NewInstance(emuHost{p})
	callMu.Lock()
	p.initing = true
	rc := p.guarded("tunnel_init", p.inst.Init)
	p.initing = false
	callMu.Unlock()
	switch {
	case rc == abi.Reject && p.configErr == nil:
		t.Fatal("sdktest: tunnel_init rejected the config without calling config_error")
	case rc == abi.Reject:
		return nil, fmt.Errorf("%s", p.configErr)
	case rc != abi.OK:
		t.Fatalf("sdktest: tunnel_init returned %d, want 0 or 1", rc)
	case p.buf == nil:
		t.Fatal("sdktest: tunnel_init returned without registering an input buffer")
	}
	t.Cleanup(p.cleanup)
	return p, nil
}

// emuPlugin is one emulated instance; through emuHost it is also the
// instance's guest.Host.
type emuPlugin struct {
	t         testing.TB
	inst      guest.Instance
	config    []byte
	route     string
	configErr []byte
	buf       []byte
	initing   bool
	cur       *emuConn // connection whose callback runs
	closing   bool     // the callback is tunnel_on_close
	nextID    uint64
	conns     []*emuConn
	logs      []Log
	stdout    bytes.Buffer
	lateDial  bool
	now       time.Duration // the fake clock
	ending    int8          // 1 + the direction of an OnData call with end=1, else 0
	out       int           // bytes sent and logged during the running call
	shared    emuShared     // the shared state and metrics
}

// guarded makes one call into the plugin. A panic there (which the SDK
// logs, then passes on: in a wasm guest it traps) fails the instance on
// the host; here it fails the test with the panic and its stack, instead
// of ending the test binary and every test after it.
func (p *emuPlugin) guarded(callback string, call func() int32) int32 {
	defer func() {
		if r := recover(); r != nil {
			p.t.Fatalf("sdktest: the plugin panicked in %s: %v; the host would fail the instance and close its connections\n%s", callback, r, debug.Stack())
		}
	}()
	return call()
}

// emuEpoch is the emulated clock's start: not zero, like the host's.
const emuEpoch = time.Hour

// maxOutput is the host's default output budget: the bytes a plugin may
// send and log during one call.
const maxOutput = 4 << 20

// spend counts n bytes of output against the running call's budget and
// fails the test past it, where the host would fail the instance.
func (p *emuPlugin) spend(what string, n int) {
	p.out += n
	if p.out > maxOutput {
		p.t.Fatalf("sdktest: ABI violation: %s: the call produced more than its output budget of %d bytes (sent and logged); the host would fail the instance", what, maxOutput)
	}
}

func (p *emuPlugin) cleanup() {
	for _, c := range p.conns {
		c.Abort()
	}
}

func (p *emuPlugin) Open() Conn {
	callMu.Lock()
	defer callMu.Unlock()
	p.nextID++
	c := &emuConn{p: p, id: p.nextID}
	p.conns = append(p.conns, c)
	p.cur, p.out = c, 0
	rc := p.guarded("NewConn", func() int32 { return p.inst.OnOpen(int64(c.id)) })
	p.cur = nil
	switch rc {
	case abi.OK:
		if c.closeReq {
			// Closed before the target was dialled: what was sent
			// toward the server goes nowhere.
			c.out[sdk.ClientToServer] = nil
		}
		c.afterCall()
		p.fireDue(p.now)
	case abi.Reject:
		// Refused: the client is closed (a reset), the target never
		// dialled, what the call sent is dropped, and tunnel_on_close
		// still comes.
		c.out = [2][]byte{}
		c.finish()
	default:
		p.t.Fatalf("sdktest: tunnel_on_open returned %d, want 0 or 1", rc)
	}
	return c
}

func (p *emuPlugin) Logs() []Log {
	callMu.Lock()
	defer callMu.Unlock()
	return append([]Log(nil), p.logs...)
}

func (p *emuPlugin) Stdout() []byte {
	callMu.Lock()
	defer callMu.Unlock()
	return bytes.Clone(p.stdout.Bytes())
}

// guest.Host, called by the plugin with callMu held.

func (p *emuPlugin) InputBuffer(b []byte) int32 {
	if !p.initing {
		return abi.StatusNotAllowed
	}
	if len(b) < 1 {
		return abi.StatusBadArgument
	}
	p.buf = b
	return abi.StatusOK
}

func (p *emuPlugin) Config(b []byte) int32 {
	if len(p.config) <= len(b) {
		copy(b, p.config)
	}
	return int32(len(p.config))
}

func (p *emuPlugin) ConfigError(msg []byte) { p.configErr = bytes.Clone(msg[:min(len(msg), maxText)]) }

func (p *emuPlugin) ConnInfo(key int32, b []byte) int32 {
	if p.cur == nil {
		return abi.StatusNotAllowed
	}
	var v string
	switch key {
	case abi.InfoRoute:
		v = p.route
	case abi.InfoClient:
		v = EmulatedClient
	case abi.InfoTarget:
		v = EmulatedTarget
		if p.lateDial {
			v = p.cur.target
		}
	case abi.InfoListen:
		v = EmulatedListen
	case abi.InfoServerName, abi.InfoALPN, abi.InfoTLSVersion, abi.InfoPeerSubject, abi.InfoPeerNames, abi.InfoPeerVerified:
		// An emulated connection has no TLS.
	default:
		return abi.StatusBadArgument
	}
	if len(v) <= len(b) {
		copy(b, v)
	}
	return int32(len(v))
}

// Send and CloseWrite check their arguments first, as the host does.

func (p *emuPlugin) Send(dir int32, b []byte) int32 {
	c := p.cur
	switch {
	case dir != abi.DirClientToServer && dir != abi.DirServerToClient:
		return abi.StatusBadArgument
	case c == nil || p.closing:
		return abi.StatusNotAllowed
	case c.closed || c.closeReq || c.writeClosed[dir]:
		return abi.StatusClosed
	}
	p.spend("send", len(b))
	c.out[dir] = append(c.out[dir], b...)
	return abi.StatusOK
}

func (p *emuPlugin) CloseWrite(dir int32) int32 {
	c := p.cur
	switch {
	case dir != abi.DirClientToServer && dir != abi.DirServerToClient:
		return abi.StatusBadArgument
	case c == nil || p.closing:
		return abi.StatusNotAllowed
	case c.closed || c.writeClosed[dir]:
		// As the host (sdk/ABI.md lists no StatusClosed for close_write):
		// half-closing a closed connection, or again, does nothing.
		return abi.StatusOK
	}
	c.writeClosed[dir] = true
	c.deferred[dir] = false
	return abi.StatusOK
}

func (p *emuPlugin) Close() int32 {
	c := p.cur
	switch {
	case c == nil || p.closing:
		return abi.StatusNotAllowed
	case c.closed:
		return abi.StatusClosed
	}
	c.closeReq = true
	return abi.StatusOK
}

// maxText is where the host cuts a log or config_error message.
const maxText = 4 << 10

func (p *emuPlugin) Log(level int32, msg []byte) {
	p.spend("log", len(msg))
	msg = msg[:min(len(msg), maxText)]
	p.logs = append(p.logs, Log{Level: logLevel(level), Msg: string(msg)})
}

// logLevel is the level the host logs a guest's level at: the highest of
// the four not above it, and debug below debug.
func logLevel(level int32) sdk.Level {
	switch {
	case level >= abi.LogError:
		return sdk.LevelError
	case level >= abi.LogWarn:
		return sdk.LevelWarn
	case level >= abi.LogInfo:
		return sdk.LevelInfo
	}
	return sdk.LevelDebug
}

// emuHost is the guest.Host of an emulated instance.
type emuHost struct{ *emuPlugin }

// Stdout is where the plugin's standard output goes.
func (h emuHost) Stdout() io.Writer { return &h.stdout }

// emuConn is one emulated connection.
type emuConn struct {
	p           *emuPlugin
	id          uint64
	held        [2][]byte
	ended       [2]bool // the source of dir half-closed
	writeClosed [2]bool // the destination of dir half-closed
	closeReq    bool
	closed      bool
	out         [2][]byte
	read        [2]int
	deferred    [2]bool     // the plugin deferred the half-close of dir (DeferEnd)
	paused      [2]bool     // the plugin paused the reads of dir's source (PauseRead)
	waiting     [2][][]byte // the Writes to dir's source not shown yet (paused)
	endWaiting  [2]bool     // End(dir) came while paused (after waiting)
	timerArmed  bool
	timerDue    time.Duration
	target      string
	tags        []tag
}

type tag struct{ k, v string }

func (c *emuConn) ID() uint64 { return c.id }

func checkDir(t testing.TB, dir sdk.Direction) {
	t.Helper()
	if dir != sdk.ClientToServer && dir != sdk.ServerToClient {
		t.Fatalf("sdktest: invalid direction %d", dir)
	}
}

// present makes one tunnel_on_data call and applies its action.
func (c *emuConn) present(dir sdk.Direction, data []byte, end bool) {
	t, p := c.p.t, c.p
	t.Helper()
	n := copy(p.buf, data)
	if n != len(data) {
		panic("sdktest: chunk larger than the input buffer")
	}
	e := int32(0)
	if end {
		e = 1
	}
	p.cur, p.out = c, 0
	if end {
		p.ending = int8(dir) + 1
	}
	a := p.guarded("OnData", func() int32 { return p.inst.OnData(int64(c.id), int32(dir), int32(n), e) })
	p.cur, p.ending = nil, 0
	switch a {
	case abi.ActionForward:
		c.forward(dir, data)
		c.held[dir] = c.held[dir][:0]
	case abi.ActionDrop:
		c.held[dir] = c.held[dir][:0]
	case abi.ActionHold:
		if end {
			// Nothing more will come: held bytes at the end of the
			// stream are forwarded.
			c.forward(dir, data)
			c.held[dir] = c.held[dir][:0]
			break
		}
		if len(data) >= len(p.buf) {
			t.Fatalf("sdktest: ABI violation: OnData returned Hold for %d bytes, a full input buffer (%d bytes); the host would kill the instance", len(data), len(p.buf))
		}
		c.held[dir] = append(c.held[dir][:0], data...)
	default:
		t.Fatalf("sdktest: tunnel_on_data returned %d, not an action", a)
	}
	c.afterCall()
}

func (c *emuConn) forward(dir sdk.Direction, b []byte) {
	if !c.closed && !c.closeReq && !c.writeClosed[dir] {
		c.out[dir] = append(c.out[dir], b...)
	}
}

// afterCall applies a Close the plugin asked for, and closes the
// connection once both streams ended at both ends.
func (c *emuConn) afterCall() {
	if c.closed {
		return
	}
	if c.closeReq || c.ended[0] && c.ended[1] && c.writeClosed[0] && c.writeClosed[1] {
		c.finish()
	}
}

// finish closes the connection and tells the plugin.
func (c *emuConn) finish() {
	c.closed = true
	c.writeClosed = [2]bool{true, true}
	c.timerArmed = false
	c.p.cur, c.p.closing, c.p.out = c, true, 0
	c.p.guarded("OnClose", func() int32 { c.p.inst.OnClose(int64(c.id)); return 0 })
	c.p.cur, c.p.closing = nil, false
}

func (c *emuConn) Write(dir sdk.Direction, b []byte) {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	callMu.Lock()
	defer callMu.Unlock()
	if c.ended[dir] {
		t.Fatalf("sdktest: Write(%s) after End(%s)", dir, dir)
	}
	if len(b) > 0 {
		c.waiting[dir] = append(c.waiting[dir], bytes.Clone(b))
	}
	c.showWaiting()
	c.p.fireDue(c.p.now)
}

// tunnelRead is the most a tunnel reads from a socket at once.
const tunnelRead = 64 << 10

// showWaiting shows the plugin what was written and ended while it paused
// the reads, once it resumes them, as the tunnel reads it: up to
// tunnelRead bytes at a time, each Write as one chunk (in chunks of at most
// the input buffer), until a direction is paused again at the end of a
// read.
func (c *emuConn) showWaiting() {
	for moved := true; moved; {
		moved = false
		for dir := range sdk.Direction(2) {
			for len(c.waiting[dir]) > 0 && !c.paused[dir] && !c.closed {
				c.readOnce(dir)
				moved = true
			}
			if c.closed {
				c.waiting[dir] = nil
			}
			if c.endWaiting[dir] && len(c.waiting[dir]) == 0 && !c.paused[dir] {
				c.endWaiting[dir] = false
				c.end(dir)
				moved = true
			}
		}
	}
}

// readOnce is one read of the tunnel's, up to tunnelRead bytes of what
// waited toward dir: the Writes it holds whole are all shown, even if the
// plugin pauses meanwhile; one it cuts waits for the next read
// (plugintest's link re-cuts what the tunnel reads at the Writes'
// boundaries). A first Write larger than a read is shown whole.
func (c *emuConn) readOnce(dir sdk.Direction) {
	for read := 0; len(c.waiting[dir]) > 0 && !c.closed; {
		w := c.waiting[dir][0]
		if read > 0 && read+len(w) > tunnelRead {
			return
		}
		c.waiting[dir] = c.waiting[dir][1:]
		read += len(w)
		c.show(dir, w)
	}
}

// show presents one Write, in chunks of at most the input buffer after
// what the plugin holds.
func (c *emuConn) show(dir sdk.Direction, w []byte) {
	for len(w) > 0 && !c.closed {
		held := c.held[dir]
		k := min(len(w), len(c.p.buf)-len(held))
		chunk := append(held, w[:k]...)
		c.held[dir] = chunk[:0]
		w = w[k:]
		c.present(dir, chunk, false)
	}
}

func (c *emuConn) ReadPaused(dir sdk.Direction) bool {
	checkDir(c.p.t, dir)
	callMu.Lock()
	defer callMu.Unlock()
	return c.paused[dir]
}

func (c *emuConn) End(dir sdk.Direction) {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	callMu.Lock()
	defer callMu.Unlock()
	if c.ended[dir] {
		t.Fatalf("sdktest: End(%s) called twice", dir)
	}
	c.ended[dir] = true
	c.endWaiting[dir] = true
	c.showWaiting()
	c.p.fireDue(c.p.now)
}

// end shows the plugin the end of dir.
func (c *emuConn) end(dir sdk.Direction) {
	if c.closed {
		return
	}
	held := c.held[dir]
	c.present(dir, held, true)
	if !c.deferred[dir] {
		c.writeClosed[dir] = true
	}
	c.afterCall()
}

func (c *emuConn) Read(dir sdk.Direction, n int) []byte {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	callMu.Lock()
	defer callMu.Unlock()
	c.checkDialled(dir)
	avail := c.out[dir][c.read[dir]:]
	if len(avail) < n {
		t.Fatalf("sdktest: want %d bytes %s, only %d arrived: %q", n, dir, len(avail), avail)
	}
	c.read[dir] += n
	return bytes.Clone(avail[:n])
}

func (c *emuConn) ReadAll(dir sdk.Direction) []byte {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	callMu.Lock()
	defer callMu.Unlock()
	if !c.writeClosed[dir] {
		t.Fatalf("sdktest: ReadAll(%s): the stream toward the %s has not ended", dir, peer(dir))
	}
	if c.p.lateDial && c.target == "" && dir == sdk.ClientToServer {
		return nil // never dialled: the server saw nothing
	}
	avail := c.out[dir][c.read[dir]:]
	c.read[dir] = len(c.out[dir])
	return bytes.Clone(avail)
}

func peer(dir sdk.Direction) string {
	if dir == sdk.ClientToServer {
		return "server"
	}
	return "client"
}

func (c *emuConn) Wait() {
	c.p.t.Helper()
	callMu.Lock()
	defer callMu.Unlock()
	if !c.closed {
		c.p.t.Fatalf("sdktest: Wait: connection #%d is still open", c.id)
	}
}

func (c *emuConn) Abort() {
	callMu.Lock()
	defer callMu.Unlock()
	if !c.closed {
		c.finish()
	}
}

// String describes the connection for test failures.
func (c *emuConn) String() string { return "emulated conn #" + strconv.FormatUint(c.id, 10) }

// checkDialled fails the test when bytes toward the server are read on a
// late-dial route whose target the plugin has not chosen.
func (c *emuConn) checkDialled(dir sdk.Direction) {
	if c.p.lateDial && c.target == "" && dir == sdk.ClientToServer {
		c.p.t.Helper()
		c.p.t.Fatalf("sdktest: Read(%s): the plugin has not chosen a target (Conn.SetTarget), so nothing was dialled", dir)
	}
}

func (c *emuConn) Target() string {
	callMu.Lock()
	defer callMu.Unlock()
	if !c.p.lateDial {
		return EmulatedTarget
	}
	return c.target
}

func (c *emuConn) Tag(key string) (string, bool) {
	callMu.Lock()
	defer callMu.Unlock()
	for _, t := range c.tags {
		if t.k == key {
			return t.v, true
		}
	}
	return "", false
}

func (p *emuPlugin) Advance(d time.Duration) {
	callMu.Lock()
	defer callMu.Unlock()
	if d < 0 {
		p.t.Fatalf("sdktest: Advance(%v): the clock does not go back", d)
	}
	until := p.now + d
	p.fireDue(until) // moves the clock to each timer's time
	p.now = until
}

// fireDue fires, in the order they come due, the timers due by until,
// moving the clock to each one's time (a timer armed by a timer callback
// fires too if it is due by until).
func (p *emuPlugin) fireDue(until time.Duration) {
	for {
		var next *emuConn
		for _, c := range p.conns {
			if c.timerArmed && !c.closed && c.timerDue <= until && (next == nil || c.timerDue < next.timerDue) {
				next = c
			}
		}
		if next == nil {
			return
		}
		p.now = max(p.now, next.timerDue)
		next.timerArmed = false
		p.cur, p.out = next, 0
		rc := p.guarded("OnTimer", func() int32 { return p.inst.OnTimer(int64(next.id)) })
		p.cur = nil
		if rc != abi.OK {
			p.t.Fatalf("sdktest: tunnel_on_timer returned %d, want 0", rc)
		}
		next.afterCall()
		next.showWaiting() // what the timer resumed
	}
}

// The ABI v2 host functions.

func (p *emuPlugin) Now() int64 { return int64(p.now) }

// acting returns the connection conn when a callback of it may act on it.
func (p *emuPlugin) acting(conn int64) (*emuConn, int32) {
	c := p.cur
	switch {
	case c == nil || p.closing:
		return nil, abi.StatusNotAllowed
	case uint64(conn) != c.id:
		return nil, abi.StatusBadArgument
	}
	return c, abi.StatusOK
}

func (p *emuPlugin) SetTimer(conn int64, ns int64) int32 {
	c, st := p.acting(conn)
	if c == nil {
		return st
	}
	if ns < 0 {
		c.timerArmed = false
		return abi.StatusOK
	}
	// Saturated, as the host does: a timer at the end of time must not
	// wrap around to one that is due at once.
	c.timerArmed, c.timerDue = true, time.Duration(math.MaxInt64)
	if d := time.Duration(ns); d <= math.MaxInt64-p.now {
		c.timerDue = p.now + d
	}
	return abi.StatusOK
}

func (p *emuPlugin) SetTarget(conn int64, addr []byte) int32 {
	c, st := p.acting(conn)
	switch {
	case c == nil:
		return st
	case !p.lateDial:
		return abi.StatusNoLateDial
	case c.target != "":
		return abi.StatusAlreadySet
	}
	host, port, err := net.SplitHostPort(string(addr))
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 || loops(host, port) {
		return abi.StatusBadArgument
	}
	c.target = string(addr)
	return abi.StatusOK
}

// loops reports whether host:port is the emulated route's own listen
// address (EmulatedListen, 127.0.0.1:8000) however written, which the host
// refuses as a target: every connection would dial the tunnel itself.
func loops(host, port string) bool {
	lh, lp, _ := net.SplitHostPort(EmulatedListen)
	if port != lp {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(net.ParseIP(lh)) || ip.To4() != nil && ip.IsUnspecified())
}

func validKey(k []byte) bool {
	if len(k) == 0 || len(k) > abi.MaxTagKeyLen {
		return false
	}
	for _, b := range k {
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

func (p *emuPlugin) SetTag(conn int64, key, value []byte) int32 {
	c, st := p.acting(conn)
	switch {
	case c == nil:
		return st
	case !validKey(key):
		return abi.StatusBadArgument
	case len(value) > abi.MaxTagValueLen:
		return abi.StatusTooLarge
	}
	for i, t := range c.tags {
		if t.k == string(key) {
			if len(value) == 0 {
				c.tags = append(c.tags[:i], c.tags[i+1:]...)
			} else {
				c.tags[i].v = string(value)
			}
			return abi.StatusOK
		}
	}
	if len(value) == 0 {
		return abi.StatusOK
	}
	if len(c.tags) >= abi.MaxTags {
		return abi.StatusTooLarge
	}
	c.tags = append(c.tags, tag{string(key), string(value)})
	return abi.StatusOK
}

func (p *emuPlugin) Tag(conn int64, key, buf []byte) int32 {
	c := p.cur
	switch {
	case c == nil:
		return abi.StatusNotAllowed
	case uint64(conn) != c.id:
		return abi.StatusBadArgument
	}
	for _, t := range c.tags {
		if t.k == string(key) {
			if len(t.v) <= len(buf) {
				copy(buf, t.v)
			}
			return int32(len(t.v))
		}
	}
	return abi.StatusNotFound
}

func (p *emuPlugin) PauseRead(conn int64, dir, pause int32) int32 {
	c, st := p.acting(conn)
	switch {
	case c == nil:
		return st
	case dir != abi.DirClientToServer && dir != abi.DirServerToClient || pause != 0 && pause != 1:
		return abi.StatusBadArgument
	}
	c.paused[dir] = pause == 1
	return abi.StatusOK
}

func (p *emuPlugin) DeferEnd(conn int64, dir int32) int32 {
	c, st := p.acting(conn)
	switch {
	case c == nil:
		return st
	case dir != abi.DirClientToServer && dir != abi.DirServerToClient:
		return abi.StatusBadArgument
	case p.ending != int8(dir)+1 || c.writeClosed[dir]:
		return abi.StatusNotAllowed
	}
	c.deferred[dir] = true
	return abi.StatusOK
}
