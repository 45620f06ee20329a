package plugin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/internal/wasm"
	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Callback names, for logs and errors.
const (
	cbOpen  = abi.ExportOnOpen
	cbData  = abi.ExportOnData
	cbClose = abi.ExportOnClose
	cbTimer = abi.ExportOnTimer
)

// Kinds of queued guest operations.
const (
	opSend = iota
	opCloseWrite
	opClose
)

type outOp struct {
	kind uint8
	dir  host.Direction
	n    int
}

// outQueue holds what a guest sent during one call. The guest's sends are
// not passed on while its instance is locked: a downstream plugin of the
// same connection could be waiting for an instance that another connection
// holds while it waits for ours (two plugins in both directions of a chain
// take their instances in opposite orders). They are copied here and
// delivered, in order, once the call has returned and the lock is released.
type outQueue struct {
	data []byte
	ops  []outOp
}

var outPool = sync.Pool{New: func() any { return new(outQueue) }}

// maxPooled is the largest buffer given back to outPool or heldPool: a
// bigger one, grown by an unusual chunk, is left to the garbage collector.
const maxPooled = 128 << 10

// heldPool holds the buffers of held bytes: a connection holds one only
// while the guest holds bytes, so idle connections cost no buffer.
var heldPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// release gives back the held bytes of dir.
func (f *wasmFilter) release(dir host.Direction) {
	if hb := f.held[dir]; hb != nil {
		f.held[dir] = nil
		if cap(*hb) <= maxPooled {
			*hb = (*hb)[:0]
			heldPool.Put(hb)
		}
	}
}

// wasmFilter is one connection's view of a plugin.
type wasmFilter struct {
	p    *Plugin
	inst *instance // nil when the plugin is bypassed from the start
	info *host.ConnInfo
	s    atomic.Pointer[host.Stream] // set by Opened; read by other connections on failure

	// Guarded by the connection's lock (every host.Filter method holds it).
	bypass  bool         // the instance failed under policy bypass: forward as is
	seen    bool         // the guest has been called for this connection
	held    [2]*[]byte   // bytes the guest holds (ActionHold), per direction; pooled
	infoStr [10]string   // conn_info values, made on first use
	due     atomic.Int64 // with Options.Clock: when the guest's timer is due on it (0: none; read by timersDue)
	defers  [2]bool      // the guest deferred the half-close of dir (defer_end) and has not ended it yet

	// Per call.
	start   time.Time // when it began, if timed (metrics.go)
	calls   uint32    // calls so far (metrics.go)
	canSend bool
	ending  int8    // 1 + the direction of a tunnel_on_data call with end=1, else 0
	cw      [2]bool // close_write queued during this call
	closing bool    // close queued during this call
	q       *outQueue
}

// enter locks in for a call of a callback the guest exports (exported).
// It reports false, with in unlocked, when there is nothing to call: the
// instance is dead (err is what the connection does about it, by its
// policy) or the guest does not export the callback (err is nil).
func (f *wasmFilter) enter(in *instance, exported bool) (bool, error) {
	in.mu.Lock()
	if in.dead != nil {
		in.mu.Unlock()
		return false, f.deadInstance(in)
	}
	if !exported {
		in.mu.Unlock()
		return false, nil
	}
	return true, nil
}

// Opened implements [host.Filter]: calls tunnel_on_open when exported.
func (f *wasmFilter) Opened(s *host.Stream) error {
	f.s.Store(s)
	if f.bypass {
		return nil
	}
	in := f.inst
	if ok, err := f.enter(in, in.w.HasOnOpen()); !ok {
		return err
	}
	f.seen = true
	f.begin()
	r, err := in.w.OnOpen(f, f.info.ID)
	f.canSend = false
	if err == nil && r != abi.OK && r != abi.Reject {
		err = &wasm.Violation{Msg: fmt.Sprintf("%s returned %d, want %d (OK) or %d (Reject)", cbOpen, r, abi.OK, abi.Reject)}
	}
	f.p.calls.done(callOpen, f.start, err, r == abi.Reject)
	if err != nil {
		fl := f.p.failedLocked(in, cbOpen, err, f)
		in.mu.Unlock()
		fl.handle()
		return f.afterFailure(cbOpen, err, s)
	}
	in.mu.Unlock()
	if err := f.deliver(s); err != nil {
		return err
	}
	if r == abi.Reject {
		return fmt.Errorf("refused by plugin %q (%s returned %d)", f.p.opts.Name, cbOpen, r)
	}
	return nil
}

// Data implements [host.Filter]: presents the chunk to tunnel_on_data, in pieces
// of at most the guest's input buffer, after the bytes the guest holds.
func (f *wasmFilter) Data(dir host.Direction, chunk []byte, s *host.Stream) error {
	if f.bypass {
		return f.passHeld(dir, chunk, s)
	}
	for len(chunk) > 0 {
		var err error
		chunk, err = f.present(dir, chunk, false, s)
		if err != nil {
			return err
		}
		if f.closing || f.cw[dir] {
			// The guest closed the connection, or this direction: the
			// rest of the chunk has nowhere to go, and is not presented
			// (a deny filter's close would not hold past its input
			// buffer's size).
			return nil
		}
	}
	return nil
}

// End implements [host.Filter]: the last call of the direction, with end=1 and the
// held bytes, if any.
func (f *wasmFilter) End(dir host.Direction, s *host.Stream) error {
	if f.bypass {
		return f.passHeld(dir, nil, s)
	}
	_, err := f.present(dir, nil, true, s)
	return err
}

// present makes one tunnel_on_data call: the held bytes and as much of chunk
// as fits. It returns the rest of chunk.
func (f *wasmFilter) present(dir host.Direction, chunk []byte, end bool, s *host.Stream) ([]byte, error) {
	in := f.inst
	in.mu.Lock()
	if in.dead != nil {
		in.mu.Unlock()
		if err := f.deadInstance(in); err != nil {
			return nil, err
		}
		return nil, f.passHeld(dir, chunk, s)
	}
	bufCap := in.w.BufCap()
	hb := f.held[dir]
	var window []byte
	if hb != nil {
		k := min(bufCap-len(*hb), len(chunk))
		*hb = append(*hb, chunk[:k]...)
		chunk = chunk[k:]
		window = *hb
	} else {
		k := min(bufCap, len(chunk))
		window, chunk = chunk[:k], chunk[k:]
	}
	last := end && len(chunk) == 0
	f.seen = true
	f.begin()
	if last {
		f.ending = int8(dir) + 1
	}
	action, err := in.w.OnData(f, f.info.ID, int32(dir), window, last)
	f.canSend, f.ending = false, 0
	if err == nil {
		switch action {
		case abi.ActionForward, abi.ActionDrop:
		case abi.ActionHold:
			if last {
				action = abi.ActionForward
			} else if len(window) >= bufCap {
				err = &wasm.Violation{Msg: fmt.Sprintf("%s returned HOLD with the input buffer full (%d bytes): there is no room for more", cbData, bufCap)}
			}
		default:
			err = &wasm.Violation{Msg: fmt.Sprintf("%s returned %d, which is not an action (0 FORWARD, 1 DROP, 2 HOLD)", cbData, action)}
		}
	}
	f.p.calls.done(callData, f.start, err, false)
	if err != nil {
		fl := f.p.failedLocked(in, cbData, err, f)
		in.mu.Unlock()
		fl.handle()
		if ferr := f.afterFailure(cbData, err, s); ferr != nil {
			return nil, ferr
		}
		// Bypass: the presented bytes (held ones included) go on unchanged,
		// then the rest of the chunk.
		err := s.Send(dir, window)
		f.release(dir)
		if err != nil {
			return nil, err
		}
		return chunk, nil
	}
	in.mu.Unlock()
	if err := f.deliver(s); err != nil {
		return nil, err
	}
	switch action {
	case abi.ActionForward:
		// The chunk's bytes, or held ones (then copied). Into a direction
		// the guest half-closed, or of a connection it closed, they have
		// nowhere to go: dropped, as a send there would be (StatusClosed).
		// The guest's close is only queued on the host's side (a Go
		// filter's goodbye after Close still goes): checked here.
		if !f.cw[dir] && !f.closing {
			if err = s.Forward(dir, window); errors.Is(err, host.ErrWriteClosed) {
				err = nil
			}
		}
		f.release(dir)
	case abi.ActionDrop:
		f.release(dir)
	case abi.ActionHold:
		if hb == nil {
			hb = heldPool.Get().(*[]byte)
			*hb = append((*hb)[:0], window...)
			f.held[dir] = hb
		}
	}
	if err != nil {
		return nil, err
	}
	return chunk, nil
}

// Closed implements [host.Filter]: calls tunnel_on_close for a connection the
// guest has seen, and unpins it.
func (f *wasmFilter) Closed() {
	defer f.p.unpin(f)
	f.release(host.ClientToServer)
	f.release(host.ServerToClient)
	in := f.inst
	if in == nil || !f.seen {
		return
	}
	in.mu.Lock()
	if in.dead != nil {
		in.mu.Unlock()
		return
	}
	if !in.w.HasOnClose() {
		in.mu.Unlock()
		f.succeeded()
		return
	}
	f.begin()
	f.canSend = false
	err := in.w.OnClose(f, f.info.ID)
	f.p.calls.done(callClose, f.start, err, false)
	var fl failure
	if err != nil {
		fl = f.p.failedLocked(in, cbClose, err, f)
	}
	if f.q != nil {
		f.q.data, f.q.ops = f.q.data[:0], f.q.ops[:0]
		outPool.Put(f.q)
		f.q = nil
	}
	in.mu.Unlock()
	if err != nil {
		fl.handle()
	} else {
		f.succeeded()
	}
}

// succeeded tells the plugin's breaker that a connection the guest saw
// ended without a failure of its instance.
func (f *wasmFilter) succeeded() {
	if !f.bypass {
		f.p.succeeded()
	}
}

// begin resets the per-call state.
func (f *wasmFilter) begin() {
	f.start = f.p.calls.clock(f)
	f.canSend = true
	f.cw = [2]bool{}
	f.closing = false
}

// afterFailure decides what the failed connection does: policy close
// returns the error that closes it; bypass delivers what the guest sent and
// carries on without the plugin.
func (f *wasmFilter) afterFailure(callback string, cause error, s *host.Stream) error {
	if !f.p.opts.FailOpen {
		if f.q != nil {
			f.q.data, f.q.ops = f.q.data[:0], f.q.ops[:0]
			outPool.Put(f.q)
			f.q = nil
		}
		return fmt.Errorf("plugin %q failed in %s: %w", f.p.opts.Name, callback, cause)
	}
	f.bypass = true
	err := f.deliver(s)
	f.endDeferred(s)
	f.resumePaused(s)
	return err
}

// endDeferred half-closes the directions whose end the guest deferred
// (defer_end) and can no longer finish: its instance failed and the
// connection goes on without it.
func (f *wasmFilter) endDeferred(s *host.Stream) {
	for d := range f.defers {
		if f.defers[d] && s != nil {
			s.CloseWrite(host.Direction(d))
		}
		f.defers[d] = false
	}
}

// deadInstance handles a call on an instance that failed on another
// connection (or whose plugin was closed): policy close fails this
// connection; bypass switches it to forwarding as is.
func (f *wasmFilter) deadInstance(in *instance) error {
	if !f.p.opts.FailOpen {
		if errors.Is(in.dead, errPluginClosed) {
			return fmt.Errorf("plugin %q: %w", f.p.opts.Name, errPluginClosed)
		}
		return fmt.Errorf("plugin %q: the instance this connection was pinned to failed: %w", f.p.opts.Name, in.dead)
	}
	f.bypass = true
	f.endDeferred(f.s.Load())
	f.resumePaused(f.s.Load())
	return nil
}

// resumePaused resumes the reads the guest paused (pause_read) and can no
// longer resume: its instance failed and the connection goes on without
// it. The host keeps each link's pause: a direction this one did not
// pause is left alone. Safe from any goroutine (host.Stream.ResumeRead is).
func (f *wasmFilter) resumePaused(s *host.Stream) {
	if s == nil {
		return
	}
	for d := host.ClientToServer; d <= host.ServerToClient; d++ {
		s.ResumeRead(d) // ErrNotAttached for a spliced direction: nothing to resume
	}
}

// passHeld forwards the held bytes of dir and then b, unchanged.
func (f *wasmFilter) passHeld(dir host.Direction, b []byte, s *host.Stream) error {
	if hb := f.held[dir]; hb != nil {
		err := s.Send(dir, *hb)
		f.release(dir)
		if err != nil {
			return err
		}
	}
	return s.Forward(dir, b)
}

// deliver passes on what the guest queued during the last call, in order.
func (f *wasmFilter) deliver(s *host.Stream) error {
	q := f.q
	if q == nil {
		return nil
	}
	f.q = nil
	var err error
	off := 0
	for _, op := range q.ops {
		switch op.kind {
		case opSend:
			if err == nil {
				if serr := s.Send(op.dir, q.data[off:off+op.n]); serr != nil && !errors.Is(serr, host.ErrWriteClosed) {
					err = serr
				}
			}
			off += op.n
		case opCloseWrite:
			if err == nil {
				s.CloseWrite(op.dir)
			}
		case opClose:
			s.Close()
		}
	}
	if cap(q.data) <= maxPooled {
		q.data, q.ops = q.data[:0], q.ops[:0]
		outPool.Put(q)
	}
	return err
}

func (f *wasmFilter) queue() *outQueue {
	if f.q == nil {
		f.q = outPool.Get().(*outQueue)
	}
	return f.q
}

// The host functions of a connection callback (wasm.Host).

// Send implements wasm.Host.
func (f *wasmFilter) Send(dir int32, b []byte) int32 {
	if dir != abi.DirClientToServer && dir != abi.DirServerToClient {
		return abi.StatusBadArgument
	}
	s := f.s.Load()
	if !f.canSend || s == nil {
		return abi.StatusNotAllowed
	}
	d := host.Direction(dir)
	switch err := s.CanSend(d); {
	case errors.Is(err, host.ErrNotAttached):
		return abi.StatusNotAllowed
	case err != nil || f.cw[d] || f.closing:
		return abi.StatusClosed
	}
	if len(b) == 0 {
		return abi.StatusOK
	}
	q := f.queue()
	q.data = append(q.data, b...)
	q.ops = append(q.ops, outOp{kind: opSend, dir: d, n: len(b)})
	return abi.StatusOK
}

// CloseWrite implements wasm.Host.
func (f *wasmFilter) CloseWrite(dir int32) int32 {
	if dir != abi.DirClientToServer && dir != abi.DirServerToClient {
		return abi.StatusBadArgument
	}
	s := f.s.Load()
	if !f.canSend || s == nil {
		return abi.StatusNotAllowed
	}
	d := host.Direction(dir)
	if errors.Is(s.CanSend(d), host.ErrNotAttached) {
		return abi.StatusNotAllowed
	}
	f.cw[d] = true
	f.defers[d] = false
	q := f.queue()
	q.ops = append(q.ops, outOp{kind: opCloseWrite, dir: d})
	return abi.StatusOK
}

// Close implements wasm.Host.
func (f *wasmFilter) Close() int32 {
	if !f.canSend || f.s.Load() == nil {
		return abi.StatusNotAllowed
	}
	f.closing = true
	q := f.queue()
	q.ops = append(q.ops, outOp{kind: opClose})
	return abi.StatusOK
}

// ConnInfo implements wasm.Host.
func (f *wasmFilter) ConnInfo(key int32) (string, int32) {
	if key < abi.InfoRoute || key > abi.InfoPeerVerified {
		return "", abi.StatusBadArgument
	}
	if f.infoStr[key] == "" {
		i := f.info
		switch key {
		case abi.InfoRoute:
			f.infoStr[key] = i.Route
		case abi.InfoClient:
			if i.Client != nil {
				f.infoStr[key] = i.Client.String()
			}
		case abi.InfoTarget:
			f.infoStr[key] = i.Target
		case abi.InfoListen:
			if i.Listen != nil {
				f.infoStr[key] = i.Listen.String()
			}
		default:
			f.infoStr[key] = tlsInfo(i.TLS, key)
		}
	}
	return f.infoStr[key], abi.StatusOK
}

// Log implements wasm.Host.
func (f *wasmFilter) Log(level int32, msg []byte) {
	ctx, l := context.Background(), slogLevel(level)
	if f.p.log.Enabled(ctx, l) && f.p.logs.allow() {
		f.p.log.Log(ctx, l, string(msg), "conn", f.info.ID)
	}
}

// A Clock is the time a plugin's guests see: the now host function, and the
// moment set_timer timers fire. [Options.Clock] nil is the host's monotonic
// clock; tests set a clock they advance by hand (see host/plugintest).
type Clock interface {
	// Now returns the time since an arbitrary origin; it never goes back.
	Now() time.Duration
}

// clockPoll is how often a connection whose guest timer is pending looks at
// a non-nil Options.Clock: the host's timers run on real time, a test
// clock moves when the test says.
const clockPoll = time.Millisecond

// Timer implements [host.TimerFilter]: the guest's set_timer fired; calls
// tunnel_on_timer and delivers what it queued.
func (f *wasmFilter) Timer(s *host.Stream) error {
	if f.bypass {
		f.due.Store(0)
		return nil
	}
	if c := f.p.opts.Clock; c != nil && f.due.Load() > 0 {
		if int64(c.Now()) < f.due.Load() {
			return s.SetTimer(clockPoll)
		}
		f.due.Store(0)
	}
	in := f.inst
	if ok, err := f.enter(in, in.w.HasOnTimer()); !ok {
		return err
	}
	f.begin()
	r, err := in.w.OnTimer(f, f.info.ID)
	f.canSend = false
	if err == nil && r != abi.OK {
		err = &wasm.Violation{Msg: fmt.Sprintf("%s returned %d, want %d (OK)", cbTimer, r, abi.OK)}
	}
	f.p.calls.done(callTimer, f.start, err, false)
	if err != nil {
		fl := f.p.failedLocked(in, cbTimer, err, f)
		in.mu.Unlock()
		fl.handle()
		return f.afterFailure(cbTimer, err, s)
	}
	in.mu.Unlock()
	return f.deliver(s)
}

// acting returns the connection's stream when the guest's call may act on
// conn (tunnel_on_open, tunnel_on_data, tunnel_on_timer of conn), or the
// status to return.
func (f *wasmFilter) acting(conn uint64) (*host.Stream, int32) {
	if conn != f.info.ID {
		return nil, abi.StatusBadArgument
	}
	s := f.s.Load()
	if !f.canSend || s == nil {
		return nil, abi.StatusNotAllowed
	}
	return s, abi.StatusOK
}

// Now implements wasm.Host.
func (f *wasmFilter) Now() int64 {
	if c := f.p.opts.Clock; c != nil {
		return int64(c.Now())
	}
	return wasm.Now()
}

// SetTimer implements wasm.Host: one timer per connection; ns < 0 disarms.
func (f *wasmFilter) SetTimer(conn uint64, ns int64) int32 {
	s, st := f.acting(conn)
	if st != abi.StatusOK {
		return st
	}
	if ns < 0 {
		f.due.Store(0)
		s.StopTimer()
		return abi.StatusOK
	}
	d := time.Duration(ns)
	if c := f.p.opts.Clock; c != nil {
		// Saturated: a timer at the end of time must not wrap around to
		// one that is due at once.
		now := c.Now()
		due := max(now+d, 1)
		if now+d < now {
			due = math.MaxInt64
		}
		f.due.Store(int64(due))
		d = min(d, clockPoll)
	}
	if err := s.SetTimer(d); err != nil {
		return abi.StatusNotAllowed
	}
	return abi.StatusOK
}

// SetTarget implements wasm.Host.
func (f *wasmFilter) SetTarget(conn uint64, addr []byte) int32 {
	s, st := f.acting(conn)
	if st != abi.StatusOK {
		return st
	}
	switch err := s.SetTarget(string(addr)); {
	case err == nil:
		return abi.StatusOK
	case errors.Is(err, host.ErrNotLateDial):
		return abi.StatusNoLateDial
	case errors.Is(err, host.ErrTargetChosen):
		return abi.StatusAlreadySet
	default:
		return abi.StatusBadArgument
	}
}

// SetTag implements wasm.Host. Setting a tag to the value it has allocates
// nothing.
func (f *wasmFilter) SetTag(conn uint64, key, value []byte) int32 {
	s, st := f.acting(conn)
	if st != abi.StatusOK {
		return st
	}
	if !validTagKey(key) {
		return abi.StatusBadArgument
	}
	if len(value) > host.MaxTagValueLen {
		return abi.StatusTooLarge
	}
	k := unsafe.String(unsafe.SliceData(key), len(key)) // only looked up, never kept
	cur, ok := s.Tag(k)
	if ok && cur == string(value) || !ok && len(value) == 0 {
		return abi.StatusOK
	}
	if len(value) == 0 {
		// Deleting does not keep the key either.
		if s.SetTag(k, "") != nil {
			return abi.StatusBadArgument
		}
		return abi.StatusOK
	}
	if s.SetTag(string(key), string(value)) != nil {
		return abi.StatusTooLarge // the key and value were checked: too many tags
	}
	return abi.StatusOK
}

// Tag implements wasm.Host; it works in every callback of the connection,
// tunnel_on_close included.
func (f *wasmFilter) Tag(conn uint64, key []byte) (string, int32) {
	if conn != f.info.ID {
		return "", abi.StatusBadArgument
	}
	s := f.s.Load()
	if s == nil {
		return "", abi.StatusNotAllowed
	}
	v, ok := s.Tag(unsafe.String(unsafe.SliceData(key), len(key)))
	if !ok {
		return "", abi.StatusNotFound
	}
	return v, abi.StatusOK
}

// DeferEnd implements wasm.Host: only in the tunnel_on_data call with
// end=1 for dir, it keeps dir's destination open after the call until the
// guest calls close_write(dir) (from tunnel_on_timer, say) or close.
func (f *wasmFilter) DeferEnd(conn uint64, dir int32) int32 {
	s, st := f.acting(conn)
	if st != abi.StatusOK {
		return st
	}
	if dir != abi.DirClientToServer && dir != abi.DirServerToClient {
		return abi.StatusBadArgument
	}
	if f.ending != int8(dir)+1 || f.cw[dir] {
		return abi.StatusNotAllowed
	}
	if s.DeferEnd(host.Direction(dir)) != nil {
		return abi.StatusNotAllowed
	}
	f.defers[dir] = true
	return abi.StatusOK
}

// PauseRead implements wasm.Host: pause (1) or resume (0) the reads of
// dir's source.
func (f *wasmFilter) PauseRead(conn uint64, dir, pause int32) int32 {
	s, st := f.acting(conn)
	if st != abi.StatusOK {
		return st
	}
	if dir != abi.DirClientToServer && dir != abi.DirServerToClient || pause != 0 && pause != 1 {
		return abi.StatusBadArgument
	}
	var err error
	if pause == 1 {
		err = s.PauseRead(host.Direction(dir))
	} else {
		err = s.ResumeRead(host.Direction(dir))
	}
	switch {
	case errors.Is(err, host.ErrNotAttached):
		return abi.StatusNotAllowed
	case err != nil:
		return abi.StatusClosed
	}
	return abi.StatusOK
}

// validTagKey mirrors host.Stream.SetTag's rule for keys, so that a bad key
// is told apart from too many tags.
func validTagKey(k []byte) bool {
	if len(k) == 0 || len(k) > host.MaxTagKeyLen {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// tlsInfo is the conn_info value of a TLS key (abi.InfoServerName ...),
// empty without TLS.
func tlsInfo(t *host.TLSInfo, key int32) string {
	if t == nil {
		return ""
	}
	switch key {
	case abi.InfoServerName:
		return t.ServerName
	case abi.InfoALPN:
		return t.ALPN
	case abi.InfoTLSVersion:
		switch t.Version {
		case tls.VersionTLS12:
			return "1.2"
		case tls.VersionTLS13:
			return "1.3"
		case 0:
			return ""
		}
		return tls.VersionName(t.Version)
	case abi.InfoPeerSubject:
		return t.PeerSubject
	case abi.InfoPeerNames:
		return strings.Join(append(slices.Clone(t.PeerDNS), t.PeerURIs...), ",")
	case abi.InfoPeerVerified:
		if t.Verified {
			return "true"
		}
	}
	return ""
}
