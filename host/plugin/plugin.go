package plugin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/internal/wasm"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
	"github.com/tunnelwasm/tunnel/internal/regfile"
)

// Defaults of [Options].
const (
	// DefaultMemoryLimit caps each plugin instance's linear memory.
	DefaultMemoryLimit = 64 << 20
	// DefaultCallTimeout bounds each call into a plugin.
	DefaultCallTimeout = time.Second
	// DefaultMaxOutput bounds the bytes a plugin sends and logs in one call.
	DefaultMaxOutput = 4 << 20
	// MaxInstances is the largest pool a plugin may ask for.
	MaxInstances = 1024
	// minInitTimeout is the least time the init calls get.
	minInitTimeout = 10 * time.Second
)

// RuntimeOptions configure a [Runtime].
type RuntimeOptions struct {
	// CacheDir, when set, keeps compiled plugin code on disk so that a
	// restart skips compilation. Empty means an in-memory cache.
	CacheDir string
	// Logger receives the runtime's and the plugins' log lines. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Registry keeps the plugins' shared state and metrics (ABI v2) across
	// reloads, and lists the metrics for export. Nil means one of the
	// Runtime's own.
	Registry *Registry
}

// Runtime runs WebAssembly plugins (ABI v1 and v2, see sdk/ABI.md) in
// wazero's sandbox. It owns the compilation cache and every module and
// plugin made from it. Compile a module once, then make any number of [Plugin]s (each
// with its own configuration and pool of instances) from it with
// [Module.NewPlugin]. A Runtime is safe for concurrent use.
type Runtime struct {
	eng    *wasm.Engine
	logger *slog.Logger
	reg    *Registry // shared.go

	mu      sync.Mutex
	modules map[*Module]struct{}
	plugins map[*Plugin]struct{}
	closed  bool
	calls   map[string]*callMetrics // by plugin name (metrics.go)
}

// NewRuntime returns a runtime. Close it when done.
func NewRuntime(ctx context.Context, opts RuntimeOptions) (*Runtime, error) {
	eng, err := wasm.NewEngine(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("plugin runtime: %w", err)
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	reg := opts.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	return &Runtime{eng: eng, logger: lg, reg: reg, modules: map[*Module]struct{}{}, plugins: map[*Plugin]struct{}{}}, nil
}

// Close closes every plugin and module of the runtime and releases the
// compiled code. Close the Proxy that uses its plugins first.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		plugins = append(plugins, p)
	}
	r.mu.Unlock()
	for _, p := range plugins {
		p.Close()
	}
	return r.eng.Close(ctx)
}

func init() {
	plugstats.Runtime = func(rt any) plugstats.Stats { return rt.(*Runtime).stats() }
	plugstats.Instances = func(p any) int { return p.(*Plugin).instances() }
	plugstats.BreakerOf = func(p any) plugstats.Breaker { return p.(*Plugin).breakerStats() }
	plugstats.SetClock = func(p any, now func() time.Time) { p.(*Plugin).clock.Store(&now) }
	plugstats.HeldBy = func(rt any, except map[any]bool) []plugstats.Held { return rt.(*Runtime).held(except) }
	plugstats.TimersDue = func(p any, now time.Duration) int { return p.(*Plugin).timersDue(now) }
}

// timersDue returns the number of connections whose guest timer is due at
// now on Options.Clock and has not fired yet (for host/plugintest, through
// plugstats).
func (p *Plugin) timersDue(now time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, in := range p.pool {
		for f := range in.conns {
			if due := f.due.Load(); due > 0 && due <= int64(now) {
				n++
			}
		}
	}
	return n
}

// held returns the plugins of r not in except that have open connections,
// with their live instances (for internal/config, through plugstats).
func (r *Runtime) held(except map[any]bool) []plugstats.Held {
	r.mu.Lock()
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		if !except[p] {
			plugins = append(plugins, p)
		}
	}
	r.mu.Unlock()
	var out []plugstats.Held
	for _, p := range plugins {
		p.mu.Lock()
		h := plugstats.Held{Name: p.opts.Name, Instances: len(p.pool), MemoryLimit: p.opts.MemoryLimit}
		for _, in := range p.pool {
			h.Conns += len(in.conns)
		}
		p.mu.Unlock()
		if h.Conns > 0 {
			out = append(out, h)
		}
	}
	return out
}

// stats returns what the runtime holds now (for tests, through plugstats).
func (r *Runtime) stats() plugstats.Stats {
	r.mu.Lock()
	s := plugstats.Stats{Modules: len(r.modules), Plugins: len(r.plugins)}
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		plugins = append(plugins, p)
	}
	r.mu.Unlock()
	for _, p := range plugins {
		s.Instances += p.instances()
	}
	return s
}

// Module is a compiled plugin module, checked against the ABI. It is
// reference counted: the caller's reference (dropped by Close) and one per
// Plugin made from it; the compiled code is released with the last one.
type Module struct {
	r    *Runtime
	name string
	c    *wasm.Compiled
	sum  [sha256.Size]byte // of the .wasm: part of the shared state's identity

	mu     sync.Mutex
	refs   int
	closed bool // the caller's reference is gone
}

// Compile compiles a module and checks it against the ABI: the exported
// memory and functions with their exact signatures, the imports, and the
// version handshake (tunnel_abi_version must return 1 or 2, and 2 when
// the module imports ABI v2 host functions). The error names
// every offending export or import and the signature expected. name labels
// the module in errors and logs (for example the file name).
func (r *Runtime) Compile(ctx context.Context, name string, wasmBytes []byte) (*Module, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("plugin %q: %w", name, wasm.ErrClosed)
	}
	c, err := r.eng.Compile(ctx, wasmBytes)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", name, err)
	}
	if err := c.CheckVersion(ctx, minInitTimeout); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("plugin %q: %w", name, err)
	}
	m := &Module{r: r, name: name, c: c, refs: 1, sum: sha256.Sum256(wasmBytes)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close(ctx)
		return nil, fmt.Errorf("plugin %q: %w", name, wasm.ErrClosed)
	}
	r.modules[m] = struct{}{}
	return m, nil
}

// Load reads a .wasm file, compiles it and makes a plugin of it: Compile
// followed by [Module.NewPlugin]. The module is released when the plugin is
// closed. opts.Name defaults to the file's base name without extension.
func (r *Runtime) Load(ctx context.Context, path string, opts Options) (*Plugin, error) {
	// A regular file of bounded size: a named pipe would hang the open
	// until a writer came, /dev/zero would be read until the memory ran
	// out.
	bin, err := regfile.ReadFile(path, MaxModuleFile, "a plugin")
	if err != nil {
		return nil, fmt.Errorf("plugin: %w", err)
	}
	if opts.Name == "" {
		opts.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	m, err := r.Compile(ctx, opts.Name, bin)
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx)
	return m.NewPlugin(ctx, opts)
}

// MaxModuleFile bounds the size of the .wasm file Load reads.
const MaxModuleFile = 256 << 20

// Name is the module's name given to Compile.
func (m *Module) Name() string { return m.name }

// Close drops the caller's reference. The compiled code is released once
// every plugin made from the module is closed too.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	return m.release(ctx)
}

func (m *Module) retain() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == 0 {
		return false
	}
	m.refs++
	return true
}

func (m *Module) release(ctx context.Context) error {
	m.mu.Lock()
	m.refs--
	last := m.refs == 0
	m.mu.Unlock()
	if !last {
		return nil
	}
	m.r.mu.Lock()
	delete(m.r.modules, m)
	m.r.mu.Unlock()
	return m.c.Close(ctx)
}

// Options configure a [Plugin]. The zero value of every field picks
// its default.
type Options struct {
	// Name identifies the plugin in logs and errors. Empty means the
	// module's name.
	Name string
	// Config is handed to the guest's tunnel_init (the config host
	// function); by convention JSON.
	Config []byte
	// MemoryLimit caps each instance's linear memory, in bytes (rounded
	// down to 64 KiB pages). Zero means DefaultMemoryLimit. A
	// standard-Go guest needs about 3.5 MiB to start (its initial memory
	// is about 2.6 MiB, and its runtime grows it at start), plus what it
	// allocates: the built-in plugins run in 3.5 MiB (noop, replace, deny)
	// to 6 MiB (dump, given 1 MiB chunks).
	MemoryLimit uint64
	// CallTimeout cuts off a call that runs longer; the instance is then
	// replaced and the failure policy applies. Zero means
	// DefaultCallTimeout. Init calls get at least 10 s. Ignored when
	// Trusted.
	CallTimeout time.Duration
	// Trusted runs the guest as it is, without the instrumentation that
	// makes a call interruptible (a counter per loop iteration and a host
	// tick every 4096 iterations): loops run up to ~1.7x faster and calls
	// ~35 ns cheaper, but CallTimeout is not enforced, and a guest that
	// loops forever hangs its connection and can stall the process's
	// garbage collector. Only for code you wrote.
	Trusted bool
	// FailOpen chooses the failure policy "bypass": when an instance fails,
	// its connections carry on as if the plugin were not in the chain from
	// then on: what the guest sent before it failed, in the failing call
	// too, is passed on, then the chunk of that call and the bytes it held,
	// unchanged (sdk/ABI.md, "What the host does when a guest fails"). The
	// default (false) is "close": they are closed.
	FailOpen bool
	// Instances is the most instances the plugin runs at once; connections
	// are pinned to the least loaded one, and instances are made as
	// needed. Zero means GOMAXPROCS.
	Instances int
	// MaxOutput bounds the bytes the guest may send, log and write to a
	// granted Stdout/Stderr during one call; more is a failure. Zero means
	// DefaultMaxOutput.
	MaxOutput int
	// Stdout and Stderr receive the guest's WASI output. Nil means it is
	// discarded (the capability is not granted). Writers shared by several
	// instances must be safe for concurrent use.
	Stdout, Stderr io.Writer
	// Logger receives the plugin's log lines and failures. Nil means the
	// runtime's logger.
	Logger *slog.Logger
	// Clock is the time ABI v2 guests see (now, set_timer). Nil means the
	// host's monotonic clock; tests give a clock they advance.
	Clock Clock

	// TripFailures failures (traps, timeouts, ABI violations, instances
	// that fail to start) within TripWindow trip the plugin: for a backoff
	// of MinTripBackoff, doubling at each trip without a success in
	// between up to TripMaxBackoff, its new connections are refused (or,
	// with FailOpen, bypass it) without making an instance. A success is
	// a connection the guest served to its end without a failure. One log
	// line reports each trip and one the recovery (the first success after
	// a backoff). Zero means DefaultTripFailures; negative
	// never trips.
	TripFailures int
	// TripWindow is the window of TripFailures. Zero means
	// DefaultTripWindow.
	TripWindow time.Duration
	// TripMaxBackoff caps the backoff of a tripped plugin. Zero means
	// DefaultTripMaxBackoff.
	TripMaxBackoff time.Duration
	// LogRate is how many log lines per second, on average, the guest may
	// log (writes to a granted Stdout or Stderr count as lines); more are
	// dropped, and their count is logged every LogSuppressedEvery. Zero
	// means DefaultLogRate.
	LogRate float64
	// LogBurst is how many lines the guest may log at once before LogRate
	// applies. Zero means DefaultLogBurst.
	LogBurst int

	// Route names the route the plugin serves: its metrics carry it as
	// the route label, and it is part of the identity of its shared state
	// (see Registry).
	Route string
	// StateMaxValue bounds each value of the plugin's shared state, in
	// bytes. Zero means DefaultStateMaxValue.
	StateMaxValue int
	// StateMaxTotal bounds the bytes of all keys and values of the
	// plugin's shared state. Zero means DefaultStateMaxTotal.
	StateMaxTotal int
}

// ConfigError is a plugin's rejection of its configuration: tunnel_init
// returned Reject with Message given through config_error.
type ConfigError struct {
	// Plugin is the plugin's name.
	Plugin string
	// Message is the guest's own text, e.g. `replace: "from" must not be empty`.
	Message string
}

// Error returns the guest's message.
func (e *ConfigError) Error() string { return e.Message }

func (o *Options) normalize(m *Module, r *Runtime) error {
	if o.Name == "" {
		o.Name = m.name
	}
	var errs []error
	if o.MemoryLimit == 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	if o.MemoryLimit < 64<<10 || o.MemoryLimit > 4<<30 {
		errs = append(errs, fmt.Errorf("memory limit %d bytes is out of range (64 KiB to 4 GiB)", o.MemoryLimit))
	}
	o.MemoryLimit &^= 64<<10 - 1
	if o.CallTimeout == 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.CallTimeout < 0 {
		errs = append(errs, fmt.Errorf("call timeout %s must not be negative", o.CallTimeout))
	}
	if o.Instances == 0 {
		o.Instances = runtime.GOMAXPROCS(0)
	}
	if o.Instances < 0 || o.Instances > MaxInstances {
		errs = append(errs, fmt.Errorf("instances %d is out of range (1 to %d)", o.Instances, MaxInstances))
	}
	if o.MaxOutput == 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	if o.MaxOutput < 0 {
		errs = append(errs, fmt.Errorf("max output %d must not be negative", o.MaxOutput))
	}
	if o.Logger == nil {
		o.Logger = r.logger
	}
	if o.TripFailures == 0 {
		o.TripFailures = DefaultTripFailures
	}
	if o.TripWindow == 0 {
		o.TripWindow = DefaultTripWindow
	}
	if o.TripWindow < 0 {
		errs = append(errs, fmt.Errorf("trip window %s must not be negative", o.TripWindow))
	}
	if o.TripMaxBackoff == 0 {
		o.TripMaxBackoff = DefaultTripMaxBackoff
	}
	if o.TripMaxBackoff < 0 {
		errs = append(errs, fmt.Errorf("trip max backoff %s must not be negative", o.TripMaxBackoff))
	}
	if o.LogRate == 0 {
		o.LogRate = DefaultLogRate
	}
	if o.LogRate < 0 || math.IsNaN(o.LogRate) || math.IsInf(o.LogRate, 0) {
		errs = append(errs, fmt.Errorf("log rate %g must be a finite number, not negative", o.LogRate))
	}
	if o.LogBurst == 0 {
		o.LogBurst = DefaultLogBurst
	}
	if o.StateMaxValue == 0 {
		o.StateMaxValue = DefaultStateMaxValue
	}
	if o.StateMaxTotal == 0 {
		o.StateMaxTotal = DefaultStateMaxTotal
	}
	if o.StateMaxValue < 0 || o.StateMaxTotal < 0 {
		errs = append(errs, fmt.Errorf("state bounds %d (value) and %d (total) must not be negative", o.StateMaxValue, o.StateMaxTotal))
	}
	if o.LogBurst < 0 {
		errs = append(errs, fmt.Errorf("log burst %d must not be negative", o.LogBurst))
	}
	return errors.Join(errs...)
}

// NewPlugin makes a plugin from the module: it instantiates the first instance
// now and runs its tunnel_init, so a configuration the guest rejects comes
// back here as a *ConfigError, and any other load failure as an error.
// The plugin holds a reference to the module until it is closed.
func (m *Module) NewPlugin(ctx context.Context, opts Options) (*Plugin, error) {
	if err := opts.normalize(m, m.r); err != nil {
		return nil, fmt.Errorf("plugin %q: %w", opts.Name, err)
	}
	if !m.retain() {
		return nil, fmt.Errorf("plugin %q: module %q is closed", opts.Name, m.name)
	}
	p := &Plugin{r: m.r, m: m, opts: opts, log: opts.Logger.With("plugin", opts.Name), calls: m.r.metricsFor(opts.Name)}
	p.logs.p = p
	p.shared = m.r.reg.acquire(sharedKey{ // shared.go
		route: opts.Route, name: opts.Name, config: sha256.Sum256(opts.Config), module: m.sum,
		maxValue: opts.StateMaxValue, maxTotal: opts.StateMaxTotal,
	})
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout != nil {
		stdout = limitedWriter{w: stdout, l: &p.logs}
	}
	if stderr != nil {
		stderr = limitedWriter{w: stderr, l: &p.logs}
	}
	p.iopts = wasm.Options{
		Mode:        wasm.Sandboxed,
		MemoryLimit: opts.MemoryLimit,
		CallTimeout: opts.CallTimeout,
		InitTimeout: max(opts.CallTimeout, minInitTimeout),
		MaxOutput:   opts.MaxOutput,
		Config:      append([]byte(nil), opts.Config...),
		Stdout:      stdout,
		Stderr:      stderr,
		Log:         p.guestLog,
		CPU:         wasm.NewCPUGate(wasm.DefaultCPUSlots()), // contain.go
	}
	if opts.Trusted {
		p.iopts.Mode = wasm.Trusted
	}
	p.iopts.Shared = &p.shared.shared
	in, err := p.newInstance(ctx)
	if err != nil {
		m.r.reg.release(p.shared)
		m.release(ctx)
		return nil, err
	}
	p.pool = append(p.pool, in)
	m.r.mu.Lock()
	if m.r.closed {
		m.r.mu.Unlock()
		p.Close()
		return nil, fmt.Errorf("plugin %q: %w", opts.Name, wasm.ErrClosed)
	}
	m.r.plugins[p] = struct{}{}
	m.r.mu.Unlock()
	return p, nil
}

// Plugin is a configured WebAssembly plugin: a [host.Hook] whose filters
// run the guest, over a pool of instances. Each connection is pinned to one
// instance for its life; an instance serves several connections, one call
// at a time. Close releases the instances. The Proxy never closes a Plugin:
// its maker does, typically from the [host.Route] OnRelease of the last
// route version that uses it (once that route's connections have ended).
//
// The guest names connections by [host.ConnInfo].ID, which is unique within one
// Proxy: use a Plugin with one Proxy only (make another Plugin from the same
// Module for another Proxy; that costs no compilation).
type Plugin struct {
	r     *Runtime
	m     *Module
	opts  Options
	iopts wasm.Options
	log   *slog.Logger

	brk   breaker
	logs  logLimiter
	calls *callMetrics                     // shared by the plugins of this name (metrics.go)
	clock atomic.Pointer[func() time.Time] // nil: time.Now

	mu       sync.Mutex
	pool     []*instance
	creating int
	nextID   int

	shared *sharedEntry // state and metrics (shared.go)
	closed bool
}

// instance is one guest instance of a plugin and the connections pinned to it.
type instance struct {
	id int
	w  *wasm.Instance

	mu   sync.Mutex // serialises calls; nests inside the connection's lock
	dead error      // set once: the instance failed or the plugin closed

	// Guarded by Plugin.mu.
	conns   map[*wasmFilter]struct{}
	removed bool
}

var errPluginClosed = errors.New("plugin closed")

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.opts.Name }

// instances returns the number of live instances.
func (p *Plugin) instances() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pool)
}

// Close closes every instance; calls of connections still open fail (and
// the failure policy applies at each one's next call). What their guests
// paused (pause_read) is resumed, so that a paused connection makes that
// call rather than wait for bytes of its other direction or its timer.
// Close is idempotent.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	pool := p.pool
	p.pool = nil
	var pinned []*wasmFilter
	for _, in := range pool {
		in.removed = true
		for f := range in.conns {
			pinned = append(pinned, f)
		}
	}
	p.mu.Unlock()
	ctx := context.Background()
	for _, in := range pool {
		in.mu.Lock()
		if in.dead == nil {
			in.dead = errPluginClosed
			in.w.Close(ctx)
		}
		in.mu.Unlock()
	}
	for _, f := range pinned {
		f.resumePaused(f.s.Load())
	}
	p.r.mu.Lock()
	delete(p.r.plugins, p)
	p.r.mu.Unlock()
	p.logs.close()
	p.r.reg.release(p.shared)
	return p.m.release(ctx)
}

// newInstance instantiates and initialises one instance.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	w, err := p.m.c.Instantiate(ctx, p.iopts)
	if err != nil {
		var rej *wasm.ConfigRejected
		if errors.As(err, &rej) {
			return nil, &ConfigError{Plugin: p.opts.Name, Message: rej.Msg}
		}
		return nil, fmt.Errorf("plugin %q: %w", p.opts.Name, err)
	}
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.mu.Unlock()
	return &instance{id: id, w: w, conns: map[*wasmFilter]struct{}{}}, nil
}

// Inline implements [host.InlineHook]: a sandboxed guest's calls are cut
// off at the call timeout, so a route whose links are such plugins can run
// on an event loop of its own; a trusted guest's calls have no deadline,
// and its routes run on goroutines.
func (p *Plugin) Inline() bool { return !p.opts.Trusted }

// Open implements [host.Hook]: it pins the connection to the least loaded
// instance, making a new one while the pool is below its size and every
// instance already has a connection.
func (p *Plugin) Open(info *host.ConnInfo) (host.Filter, error) {
	f := &wasmFilter{p: p, info: info}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("plugin %q: %w", p.opts.Name, errPluginClosed)
	}
	if left := p.admit(); left > 0 {
		p.mu.Unlock()
		if p.opts.FailOpen {
			f.bypass = true
			return f, nil
		}
		return nil, fmt.Errorf("plugin %q is tripped (%d failures within %s): refusing new connections for %s more",
			p.opts.Name, p.opts.TripFailures, p.opts.TripWindow, left.Round(time.Millisecond))
	}
	var best *instance
	for _, in := range p.pool {
		if best == nil || len(in.conns) < len(best.conns) {
			best = in
		}
	}
	if best != nil && (len(best.conns) == 0 || len(p.pool)+p.creating >= p.opts.Instances) {
		best.conns[f] = struct{}{}
		f.inst = best
		p.mu.Unlock()
		return f, nil
	}
	p.creating++
	p.mu.Unlock()
	in, err := p.newInstance(context.Background())
	p.mu.Lock()
	p.creating--
	if err != nil {
		p.mu.Unlock()
		p.log.Error("plugin instance failed to start", "conn", info.ID, "err", err.Error())
		p.failed()
		if p.opts.FailOpen {
			f.bypass = true
			return f, nil
		}
		return nil, err
	}
	if p.closed {
		p.mu.Unlock()
		in.w.Close(context.Background())
		return nil, fmt.Errorf("plugin %q: %w", p.opts.Name, errPluginClosed)
	}
	p.pool = append(p.pool, in)
	in.conns[f] = struct{}{}
	f.inst = in
	p.mu.Unlock()
	return f, nil
}

// unpin forgets f's connection.
func (p *Plugin) unpin(f *wasmFilter) {
	if f.inst == nil {
		return
	}
	p.mu.Lock()
	delete(f.inst.conns, f)
	p.mu.Unlock()
}

// failure is an instance's failure, recorded under the instance's lock by
// failedLocked and acted on by handle once the lock is released: closing
// the other connections pinned to the instance never waits for that lock.
type failure struct {
	p        *Plugin
	in       *instance
	callback string
	cause    error
	conn     uint64        // the connection whose call failed
	others   []*wasmFilter // the other connections pinned to the instance
}

// failedLocked records the failure of in during callback, seen by the
// connection of self. Called with in.mu held: the instance is closed (no
// call can start on it again) and leaves the pool.
func (p *Plugin) failedLocked(in *instance, callback string, cause error, self *wasmFilter) failure {
	in.dead = cause
	in.w.Close(context.Background())
	fl := failure{p: p, in: in, callback: callback, cause: cause}
	if self != nil {
		fl.conn = self.info.ID
	}
	p.mu.Lock()
	if !in.removed {
		in.removed = true
		for i, x := range p.pool {
			if x == in {
				p.pool = append(p.pool[:i], p.pool[i+1:]...)
				break
			}
		}
	}
	for f := range in.conns {
		if f != self {
			fl.others = append(fl.others, f)
		}
	}
	p.mu.Unlock()
	return fl
}

// handle logs the failure and applies the policy to the other connections
// pinned to the instance: closed at once ("close"), or bypassing the plugin
// from their next chunk on ("bypass"). Called without the instance's lock.
func (fl *failure) handle() {
	p := fl.p
	policy := "close"
	if p.opts.FailOpen {
		policy = "bypass"
	}
	p.log.Error("plugin failed", "callback", fl.callback, "cause", firstLine(fl.cause), "policy", policy,
		"instance", fl.in.id, "conn", fl.conn, "conns", len(fl.others)+1)
	p.failed()
	if p.opts.FailOpen {
		// They bypass the plugin from their next callback on; what the
		// guest paused may bring none: resume it now.
		for _, f := range fl.others {
			f.resumePaused(f.s.Load())
		}
		return
	}
	for _, f := range fl.others {
		if s := f.s.Load(); s != nil {
			s.Abort(fmt.Errorf("plugin %q: the instance this connection was pinned to failed on connection %d (%s)", p.opts.Name, fl.conn, firstLine(fl.cause)))
		}
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// guestLog logs a line from the guest outside a connection.
func (p *Plugin) guestLog(level int32, msg []byte) {
	ctx, l := context.Background(), slogLevel(level)
	if p.log.Enabled(ctx, l) && p.logs.allow() {
		p.log.Log(ctx, l, string(msg))
	}
}

func slogLevel(l int32) slog.Level {
	switch {
	case l < int32(slog.LevelInfo):
		return slog.LevelDebug
	case l < int32(slog.LevelWarn):
		return slog.LevelInfo
	case l < int32(slog.LevelError):
		return slog.LevelWarn
	}
	return slog.LevelError
}
