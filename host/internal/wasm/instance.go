package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Host implements the connection-scoped host functions for one call. The
// byte slices are views of guest memory, valid only until the method returns.
type Host interface {
	// Send implements send; it returns an abi Status* code.
	Send(dir int32, b []byte) int32
	// CloseWrite implements close_write.
	CloseWrite(dir int32) int32
	// Close implements close.
	Close() int32
	// ConnInfo returns the value for a conn_info key, or a negative status.
	ConnInfo(key int32) (string, int32)
	// Log implements log.
	Log(level int32, msg []byte)

	// ABI v2. conn is the id the guest passed; a Host checks that it is
	// the connection of the call.

	// Now implements now: monotonic nanoseconds.
	Now() int64
	// SetTimer implements set_timer.
	SetTimer(conn uint64, ns int64) int32
	// SetTarget implements set_target.
	SetTarget(conn uint64, addr []byte) int32
	// SetTag implements set_tag.
	SetTag(conn uint64, key, value []byte) int32
	// Tag returns the value of a tag for get_tag, or a negative status.
	Tag(conn uint64, key []byte) (string, int32)
	// DeferEnd implements defer_end.
	DeferEnd(conn uint64, dir int32) int32
	// PauseRead implements pause_read.
	PauseRead(conn uint64, dir, pause int32) int32
}

// NoConn is the Host of calls outside a connection (tunnel_init): every
// connection-scoped function returns StatusNotAllowed. Log goes to LogFunc.
type NoConn struct {
	LogFunc func(level int32, msg []byte)
}

// Send implements Host.
func (NoConn) Send(int32, []byte) int32 { return abi.StatusNotAllowed }

// CloseWrite implements Host.
func (NoConn) CloseWrite(int32) int32 { return abi.StatusNotAllowed }

// Close implements Host.
func (NoConn) Close() int32 { return abi.StatusNotAllowed }

// ConnInfo implements Host.
func (NoConn) ConnInfo(int32) (string, int32) { return "", abi.StatusNotAllowed }

// Now implements Host: the host's monotonic clock.
func (NoConn) Now() int64 { return Now() }

// SetTimer implements Host.
func (NoConn) SetTimer(uint64, int64) int32 { return abi.StatusNotAllowed }

// SetTarget implements Host.
func (NoConn) SetTarget(uint64, []byte) int32 { return abi.StatusNotAllowed }

// SetTag implements Host.
func (NoConn) SetTag(uint64, []byte, []byte) int32 { return abi.StatusNotAllowed }

// Tag implements Host.
func (NoConn) Tag(uint64, []byte) (string, int32) { return "", abi.StatusNotAllowed }

// DeferEnd implements Host.
func (NoConn) DeferEnd(uint64, int32) int32 { return abi.StatusNotAllowed }

// PauseRead implements Host.
func (NoConn) PauseRead(uint64, int32, int32) int32 { return abi.StatusNotAllowed }

// Log implements Host.
func (n NoConn) Log(level int32, msg []byte) {
	if n.LogFunc != nil {
		n.LogFunc(level, msg)
	}
}

// Options configure an instance.
type Options struct {
	Mode        Mode
	MemoryLimit uint64        // bytes, > 0
	CallTimeout time.Duration // per call, Sandboxed only
	InitTimeout time.Duration // for _initialize, tunnel_abi_version and tunnel_init
	MaxOutput   int           // bytes sent + logged per call
	Config      []byte
	Stdout      io.Writer // nil: discarded
	Stderr      io.Writer // nil: discarded
	Log         func(level int32, msg []byte)
	CPU         *CPUGate // shared by a plugin's instances (yield.go); nil: no cap
	Shared      *Shared  // the plugin's state and metrics (ABI v2); nil: none
}

// Errors of calls. Each is wrapped with the callback's name.
var (
	// ErrTimeout: the call ran past its time limit and was cut off.
	ErrTimeout = errors.New("call exceeded its time limit")

	errInstanceClosed = errors.New("instance is closed")
)

// Violation is a breach of the ABI by the guest.
type Violation struct{ Msg string }

// Error implements error.
func (v *Violation) Error() string { return "ABI violation: " + v.Msg }

// ConfigRejected is tunnel_init's refusal of its configuration.
type ConfigRejected struct{ Msg string }

// Error returns the guest's message.
func (c *ConfigRejected) Error() string { return c.Msg }

// VersionMismatch is a guest speaking another ABI version.
type VersionMismatch struct{ Got int32 }

// Error names both versions.
func (v *VersionMismatch) Error() string {
	return fmt.Sprintf("guest speaks tunnel ABI version %d, this host speaks versions %d to %d", v.Got, abi.OldestVersion, abi.Version)
}

// trapped is the panic value a host function uses to fail the call.
type trapped struct{}

// Instance is one instantiated guest. Calls must not be concurrent: the
// caller serialises them. Instance implements context.Context so that the
// host functions find it without allocating; its Done channel is closed when
// a call runs past its time limit.
type Instance struct {
	mod                      api.Module
	mem                      api.Memory
	onOpen, onData, onClose  api.Function
	onTimer                  api.Function // nil for a v1 guest
	version                  int32
	abiVersion, init, initFn api.Function
	stack                    [4]uint64
	bufPtr, bufCap           uint32
	variant                  variant
	timeout                  time.Duration
	maxOutput                int
	config                   []byte
	shared                   *Shared

	// Per call.
	host      Host
	inInit    bool
	out       int
	violation error
	cfgErr    string

	// Time limit. active holds the sequence number of the running call, 0
	// between calls, -1 once the watchdog killed the instance. deadline is
	// the running call's, in monotonic nanoseconds (now). fireAt is when
	// the timer is scheduled to fire, 0 while it is not (a deadline is
	// never 0: now counts from epoch). The timer is re-armed by itself while
	// calls run and by the first call after it found the instance idle, so
	// a call costs a clock read and three atomics, not a timer reset. A
	// call whose deadline comes before fireAt (the timer was armed for a
	// call with a longer limit: the init calls get at least 10 s) brings it
	// forward. Arming is serialised by wmu.
	timer    *time.Timer
	seq      int64
	active   atomic.Int64
	deadline atomic.Int64
	fireAt   atomic.Int64
	wmu      sync.Mutex
	kill     chan struct{}
	killed   atomic.Bool
	closed   bool

	alloc allocator // released by Close, after the module
	// refusals counts the memory growths alloc refused past memLimit
	// (allocator.refused), read around each call.
	refusals *uint64
	memLimit uint64

	cpu cpuShare // see yield.go
}

// epoch is the origin of now: a monotonic clock immune to wall-clock jumps.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// Now is the host's monotonic clock in nanoseconds, the value of the now
// host function.
func Now() int64 { return now() }

type instKey struct{}

// Deadline implements context.Context (no deadline: the watchdog enforces it).
func (in *Instance) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done implements context.Context: closed when a call is cut off. Only
// guarded code (wazero's CloseOnContextDone) watches it; instrumented code
// sees the cut-off at its next tick.
func (in *Instance) Done() <-chan struct{} {
	if in.variant != guarded {
		return nil
	}
	return in.kill
}

// Err implements context.Context.
func (in *Instance) Err() error {
	if in.killed.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context.
func (in *Instance) Value(key any) any {
	if _, ok := key.(instKey); ok {
		return in
	}
	return nil
}

// Instantiate makes a new instance and runs _initialize (when exported), the
// version handshake and tunnel_init. A rejected configuration is returned as
// *ConfigRejected, a wrong version as *VersionMismatch.
func (c *Compiled) Instantiate(ctx context.Context, o Options) (in *Instance, err error) {
	if c.MinMemory > o.MemoryLimit {
		return nil, fmt.Errorf("the module's initial memory is %d KiB, more than the memory limit of %d KiB", c.MinMemory>>10, o.MemoryLimit>>10)
	}
	cm, rt, v, err := c.module(ctx, o.Mode)
	if err != nil {
		return nil, err
	}
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	var outs []*budgetWriter
	if o.Stdout != nil {
		w := &budgetWriter{w: o.Stdout, what: "stdout"}
		outs = append(outs, w)
		mc = mc.WithStdout(w)
	}
	initErr := &initStderr{}
	if o.Stderr != nil {
		w := &budgetWriter{w: o.Stderr, what: "stderr"}
		outs = append(outs, w)
		mc = mc.WithStderr(w)
	} else {
		mc = mc.WithStderr(initErr)
	}
	alloc := newAllocator(o.MemoryLimit)
	ictx := experimental.WithMemoryAllocator(ctx, alloc)
	var mod api.Module
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("instantiate: %v", r)
			}
		}()
		mod, err = rt.InstantiateModule(ictx, cm, mc)
	}()
	if err != nil {
		if mod != nil {
			mod.Close(ctx)
		}
		alloc.release()
		if !strings.HasPrefix(err.Error(), "instantiate") {
			err = fmt.Errorf("instantiate: %w", err)
		}
		return nil, err
	}
	in = &Instance{
		mod:        mod,
		mem:        mod.Memory(),
		onOpen:     mod.ExportedFunction(abi.ExportOnOpen),
		onData:     mod.ExportedFunction(abi.ExportOnData),
		onClose:    mod.ExportedFunction(abi.ExportOnClose),
		abiVersion: mod.ExportedFunction(abi.ExportABIVersion),
		init:       mod.ExportedFunction(abi.ExportInit),
		initFn:     mod.ExportedFunction(abi.ExportInitialize),
		variant:    v,
		timeout:    o.InitTimeout,
		maxOutput:  o.MaxOutput,
		config:     o.Config,
		shared:     o.Shared,
		kill:       make(chan struct{}),
		alloc:      alloc,
		cpu:        cpuShare{gate: o.CPU},
	}
	in.refusals, in.memLimit = alloc.refused()
	for _, w := range outs {
		w.in = in
	}
	if in.variant != plain {
		in.timer = time.AfterFunc(time.Hour, in.expire)
		in.timer.Stop()
	}
	defer func() {
		if err != nil {
			in.Close(ctx)
			in = nil
		}
	}()
	defer initErr.stop()
	init := NoConn{LogFunc: o.Log}
	if in.initFn != nil {
		if err := in.call(init, in.initFn); err != nil {
			return in, initErr.quote(fmt.Errorf("%s: %w", abi.ExportInitialize, err))
		}
	}
	if err := in.call(init, in.abiVersion); err != nil {
		return in, fmt.Errorf("%s: %w", abi.ExportABIVersion, err)
	}
	in.version = int32(in.stack[0])
	if err := c.checkVersion(in.version); err != nil {
		return in, err
	}
	if in.version >= 2 {
		in.onTimer = mod.ExportedFunction(abi.ExportOnTimer)
	}
	in.inInit = true
	err = in.call(init, in.init)
	in.inInit = false
	if err != nil {
		return in, initErr.quote(fmt.Errorf("%s: %w", abi.ExportInit, err))
	}
	switch r := int32(in.stack[0]); r {
	case abi.OK:
	case abi.Reject:
		msg := in.cfgErr
		if msg == "" {
			msg = "the plugin rejected its configuration without saying why (tunnel_init returned 1 without calling config_error)"
		}
		return in, &ConfigRejected{Msg: msg}
	default:
		return in, fmt.Errorf("%s returned %d, want %d (OK) or %d (Reject)", abi.ExportInit, r, abi.OK, abi.Reject)
	}
	if in.bufCap == 0 {
		return in, fmt.Errorf("%s returned OK without registering an input buffer (call %s(ptr, cap) during init)", abi.ExportInit, abi.ImportInputBuffer)
	}
	in.timeout = o.CallTimeout
	return in, nil
}

// initStderr is the stderr of a guest that was not granted one, while it
// initializes: it keeps the start of what is written then, and drops
// everything after. A Go guest's runtime prints a panic in func init (or
// in the SDK's factory) there before it traps, and the load error would
// otherwise say only "wasm error: unreachable".
type initStderr struct {
	buf     []byte
	stopped bool
}

// maxInitStderr bounds what initStderr keeps.
const maxInitStderr = 4 << 10

func (w *initStderr) Write(p []byte) (int, error) {
	if !w.stopped && len(w.buf) < maxInitStderr {
		w.buf = append(w.buf, p[:min(len(p), maxInitStderr-len(w.buf))]...)
	}
	return len(p), nil
}

// stop drops what was kept and all that comes later.
func (w *initStderr) stop() { w.stopped, w.buf = true, nil }

// quote adds the first line the guest wrote to its stderr to err, the
// error of a failed _initialize or tunnel_init.
func (w *initStderr) quote(err error) error {
	for line := range strings.Lines(string(w.buf)) {
		if line = strings.TrimSpace(line); line != "" {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			return fmt.Errorf("%w (the guest wrote to its stderr: %q)", err, line)
		}
	}
	return err
}

// probeMemory caps the memory of CheckVersion's throwaway instance.
const probeMemory = 64 << 20

// probeOutput bounds what CheckVersion's instance may log (and drop).
const probeOutput = 64 << 20

// CheckVersion instantiates a throwaway instance, runs _initialize and the
// version handshake, and closes it.
func (c *Compiled) CheckVersion(ctx context.Context, timeout time.Duration) (err error) {
	cm, rt, v, err := c.module(ctx, Sandboxed)
	if err != nil {
		return err
	}
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions().WithSysWalltime().WithSysNanotime().WithRandSource(rand.Reader)
	// The probe needs the module's initial memory and what _initialize
	// grows; it must not become a way to make the host allocate gigabytes.
	alloc := newAllocator(max(c.MinMemory, probeMemory))
	ictx := experimental.WithMemoryAllocator(ctx, alloc)
	mod, err := rt.InstantiateModule(ictx, cm, mc)
	if err != nil {
		alloc.release()
		return fmt.Errorf("instantiate: %w", err)
	}
	// What _initialize and the handshake log is dropped (the instances
	// made later log it), within a budget: a C constructor or a Go init
	// that prints is no violation.
	in := &Instance{mod: mod, mem: mod.Memory(), variant: v, timeout: timeout, maxOutput: probeOutput, kill: make(chan struct{}), alloc: alloc}
	in.refusals, in.memLimit = alloc.refused()
	in.timer = time.AfterFunc(time.Hour, in.expire)
	in.timer.Stop()
	defer in.Close(ctx)
	if fn := mod.ExportedFunction(abi.ExportInitialize); fn != nil {
		if err := in.call(NoConn{}, fn); err != nil {
			return fmt.Errorf("%s: %w", abi.ExportInitialize, err)
		}
	}
	if err := in.call(NoConn{}, mod.ExportedFunction(abi.ExportABIVersion)); err != nil {
		return fmt.Errorf("%s: %w", abi.ExportABIVersion, err)
	}
	return c.checkVersion(int32(in.stack[0]))
}

// BufCap is the size of the guest's input buffer.
func (in *Instance) BufCap() int { return int(in.bufCap) }

// HasOnOpen reports whether the guest exports tunnel_on_open.
func (in *Instance) HasOnOpen() bool { return in.onOpen != nil }

// HasOnClose reports whether the guest exports tunnel_on_close.
func (in *Instance) HasOnClose() bool { return in.onClose != nil }

// HasOnTimer reports whether the guest speaks ABI v2 and exports
// tunnel_on_timer.
func (in *Instance) HasOnTimer() bool { return in.onTimer != nil }

// Version is the ABI version the guest answered to the handshake.
func (in *Instance) Version() int32 { return in.version }

// OnTimer calls tunnel_on_timer and returns its result.
func (in *Instance) OnTimer(h Host, conn uint64) (int32, error) {
	in.stack[0] = conn
	if err := in.call(h, in.onTimer); err != nil {
		return 0, err
	}
	return int32(in.stack[0]), nil
}

// OnOpen calls tunnel_on_open and returns its result.
func (in *Instance) OnOpen(h Host, conn uint64) (int32, error) {
	in.stack[0] = conn
	if err := in.call(h, in.onOpen); err != nil {
		return 0, err
	}
	return int32(in.stack[0]), nil
}

// OnData writes data into the input buffer (len(data) <= BufCap) and calls
// tunnel_on_data; it returns the action.
func (in *Instance) OnData(h Host, conn uint64, dir int32, data []byte, end bool) (int32, error) {
	if !in.mem.Write(in.bufPtr, data) {
		return 0, &Violation{Msg: "input buffer is outside memory"}
	}
	in.stack[0] = conn
	in.stack[1] = uint64(uint32(dir))
	in.stack[2] = uint64(uint32(len(data)))
	in.stack[3] = 0
	if end {
		in.stack[3] = 1
	}
	if err := in.call(h, in.onData); err != nil {
		return 0, err
	}
	return int32(in.stack[0]), nil
}

// OnClose calls tunnel_on_close.
func (in *Instance) OnClose(h Host, conn uint64) error {
	in.stack[0] = conn
	return in.call(h, in.onClose)
}

// call runs fn with in.stack as parameters and results, under the time
// limit, and turns every way a call can fail into an error.
func (in *Instance) call(h Host, fn api.Function) (err error) {
	if in.killed.Load() {
		return ErrTimeout
	}
	if in.closed {
		return errInstanceClosed
	}
	in.host = h
	in.out = 0
	in.violation = nil
	refused := *in.refusals
	var seq int64
	if in.variant != plain {
		in.seq++
		seq = in.seq
		dl := now() + int64(in.timeout)
		in.deadline.Store(dl)
		in.active.Store(seq)
		if f := in.fireAt.Load(); f == 0 || dl < f {
			in.arm(dl)
		}
	}
	err = fn.CallWithStack(in, in.stack[:])
	if in.variant == instrumented {
		in.endCall()
	}
	if in.variant != plain {
		if !in.active.CompareAndSwap(seq, 0) {
			// The watchdog fired: whatever the call returned, it overran.
			err = ErrTimeout
		}
	}
	in.host = nil
	if in.violation != nil {
		return in.violation
	}
	if err != nil && in.killed.Load() {
		return ErrTimeout
	}
	if err != nil && *in.refusals > refused {
		return memoryFull(err, in.memLimit)
	}
	return err
}

// arm makes sure the timer fires by dl, the running call's deadline.
func (in *Instance) arm(dl int64) {
	in.wmu.Lock()
	if f := in.fireAt.Load(); f == 0 || dl < f {
		in.schedule(dl)
	}
	in.wmu.Unlock()
}

// schedule (with wmu held) sets the timer to fire at dl.
func (in *Instance) schedule(dl int64) {
	in.fireAt.Store(dl)
	in.timer.Reset(time.Duration(dl - now()))
}

// expire is the watchdog: it runs on the timer's goroutine and kills the
// instance if the call it was armed for is still running past its deadline.
//
// It disarms first and then looks for a running call: a call that starts
// concurrently either is seen here (and the timer re-armed for its
// deadline) or sees the timer disarmed and arms it itself. If it re-arms
// for the deadline of the call before (read just before the next call
// stored its own), that call sees fireAt past its deadline and brings the
// timer forward.
func (in *Instance) expire() {
	in.wmu.Lock()
	in.fireAt.Store(0)
	s := in.active.Load()
	if s <= 0 {
		in.wmu.Unlock()
		return // idle (or already killed): stay disarmed
	}
	dl := in.deadline.Load()
	if now() < dl {
		// A call that started after the one the timer was armed for.
		in.schedule(dl)
		in.wmu.Unlock()
		return
	}
	in.wmu.Unlock()
	if in.active.CompareAndSwap(s, -1) {
		in.killed.Store(true)
		close(in.kill) // wazero's watcher of this call closes the module
	}
}

// Close closes the instance. It must not be called during a call.
func (in *Instance) Close(ctx context.Context) error {
	if in.closed {
		return nil
	}
	in.closed = true
	if in.timer != nil {
		in.timer.Stop()
	}
	err := in.mod.Close(ctx)
	in.alloc.release()
	return err
}

// fail records a violation and traps the running call.
func (in *Instance) fail(format string, args ...any) {
	in.violation = &Violation{Msg: fmt.Sprintf(format, args...)}
	panic(trapped{})
}

// spend counts n bytes of output against the call's budget.
func (in *Instance) spend(what string, n uint32) {
	in.out += int(n)
	if in.out > in.maxOutput {
		in.fail("%s: the call produced more than its output budget of %d bytes", what, in.maxOutput)
	}
}

// read returns a view of guest memory or traps.
func (in *Instance) read(what string, ptr, n uint32) []byte {
	b, ok := in.mem.Read(ptr, n)
	if !ok {
		in.fail("%s: range [%d, %d) is outside the guest's memory (%d bytes)", what, ptr, uint64(ptr)+uint64(n), in.mem.Size())
	}
	return b
}

// limitedAllocator backs an instance's linear memory with a Go slice that
// never grows past limit: memory.grow beyond it returns -1. It is the
// fallback of newAllocator where memory cannot be mapped (see mem_linux.go).
type limitedAllocator struct {
	limit    uint64
	buf      []byte
	refusals *uint64 // growths past the limit refused: the allocator's count
}

// newLimitedAllocator returns a limitedAllocator counting its refusals in
// refusals (its own count when nil).
func newLimitedAllocator(limit uint64, refusals *uint64) *limitedAllocator {
	if refusals == nil {
		refusals = new(uint64)
	}
	return &limitedAllocator{limit: limit, refusals: refusals}
}

// Allocate implements experimental.MemoryAllocator: one allocator per instance.
func (a *limitedAllocator) Allocate(capacity, max uint64) experimental.LinearMemory { return a }

// Reallocate implements experimental.LinearMemory; nil refuses the growth.
func (a *limitedAllocator) Reallocate(size uint64) []byte {
	if size > a.limit {
		*a.refusals++
		return nil
	}
	if size <= uint64(cap(a.buf)) {
		a.buf = a.buf[:size]
		return a.buf
	}
	// Grow by a quarter at least (amortised copies), never past the limit.
	c := max(size, uint64(cap(a.buf))+uint64(cap(a.buf))/4)
	c = min(c, a.limit)
	b := make([]byte, size, c)
	copy(b, a.buf)
	a.buf = b
	return b
}

// Free implements experimental.LinearMemory.
func (a *limitedAllocator) Free() { a.buf = nil }

// release implements allocator: the garbage collector frees the slice.
func (a *limitedAllocator) release() {}

// refused implements allocator.
func (a *limitedAllocator) refused() (*uint64, uint64) { return a.refusals, a.limit }

// allocator makes the linear memory of one instance; release gives it back
// once the instance is closed.
type allocator interface {
	experimental.MemoryAllocator
	release()
	// refused returns the count of the growths of the memory refused for
	// going past the limit (read by the instance after a failed call), and
	// the limit in bytes.
	refused() (count *uint64, limit uint64)
}

// memoryFull names the limit in the error of a call during which the
// guest was refused memory: it then fails in ways that do not say so
// (Go's runtime: "wasm error: unreachable" from its allocator), and the
// operator would not know to raise memory_limit.
func memoryFull(err error, limit uint64) error {
	size := strconv.FormatUint(limit, 10) + " bytes"
	switch {
	case limit%(1<<20) == 0:
		size = strconv.FormatUint(limit>>20, 10) + " MiB"
	case limit%(1<<10) == 0:
		size = strconv.FormatUint(limit>>10, 10) + " KiB"
	}
	return fmt.Errorf("the guest's memory reached its limit of %s (memory_limit): %w", size, err)
}

// budgetWriter is a granted stdout or stderr: what the guest writes counts
// against the call's output budget, like send and log.
type budgetWriter struct {
	w    io.Writer
	what string
	in   *Instance
}

// Write counts p against the running call's budget (trapping it when
// exceeded) and passes it on.
func (b *budgetWriter) Write(p []byte) (int, error) {
	if b.in != nil && b.in.host != nil {
		b.in.spend(b.what, uint32(min(len(p), 1<<31)))
	}
	return b.w.Write(p)
}
