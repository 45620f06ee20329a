// Package wasm is the wazero side of the tunnel's plugin runtime: the
// compilation cache and runtimes, load-time validation of a module against
// ABI v1 (sdk/ABI.md), instances with a memory cap and a per-call time limit,
// and the host functions of the import module "tunnel".
//
// It knows nothing of connections: a call is given a [Host] that implements
// the connection-scoped host functions. Package host builds the pool of
// instances and the per-connection filters on top of it.
package wasm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Mode selects how guest code runs.
type Mode int

const (
	// Sandboxed code can be cut off at its call's deadline, and a spinning
	// guest never stalls Go's garbage collector. The module is instrumented
	// (see instrument.go); a module the instrumentation does not understand
	// is refused by Compile (wazero's CloseOnContextDone, which tests can
	// still choose, checks at loop heads only: calls alone would escape).
	Sandboxed Mode = 0
	// Trusted code runs as it is: no time limit, and a guest that never
	// returns hangs its caller for good.
	Trusted Mode = 1
)

// variant is one compiled form of a module.
type variant int

const (
	instrumented variant = iota // Sandboxed: the instrumented binary, plain runtime
	guarded                     // Sandboxed fallback: CloseOnContextDone runtime
	plain                       // Trusted: the binary as is, plain runtime
)

// Engine owns the wazero runtimes (plain, and with CloseOnContextDone for
// the guarded fallback; made on first use) and the compilation cache they
// share.
type Engine struct {
	cache    wazero.CompilationCache
	cacheDir string // "" when the cache is in memory

	mu     sync.Mutex
	rts    [2]wazero.Runtime // [0] plain, [1] guarded
	closed bool

	noInstrument bool // tests: run Sandboxed code guarded
}

// NewEngine returns an engine whose compiled code is cached in memory, or in
// cacheDir when it is not empty (so a restart skips compilation).
func NewEngine(cacheDir string) (*Engine, error) {
	e := &Engine{cacheDir: cacheDir}
	if cacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, fmt.Errorf("compilation cache %s: %w", cacheDir, err)
		}
		e.cache = c
	} else {
		e.cache = wazero.NewCompilationCache()
	}
	return e, nil
}

// ErrClosed is returned by an Engine (and what it made) after Close.
var ErrClosed = errors.New("plugin runtime is closed")

// runtime returns the wazero runtime for variant v, making it on first use
// with WASI (nothing granted) and the "tunnel" host module instantiated.
func (e *Engine) runtime(ctx context.Context, v variant) (wazero.Runtime, error) {
	i := 0
	if v == guarded {
		i = 1
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if rt := e.rts[i]; rt != nil {
		return rt, nil
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(e.cache).
		WithCloseOnContextDone(v == guarded)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	if err := instantiateHostModule(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("instantiate host module %q: %w", abi.ImportModule, err)
	}
	e.rts[i] = rt
	return rt, nil
}

// Close releases the runtimes, every instance and all compiled code, and the
// in-memory compilation cache.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	rts := e.rts
	e.mu.Unlock()
	var errs []error
	for _, rt := range rts {
		if rt != nil {
			errs = append(errs, rt.Close(ctx))
		}
	}
	errs = append(errs, e.cache.Close(ctx))
	return errors.Join(errs...)
}

// Compiled is a module compiled and checked against the ABI. The code for
// each Mode is compiled on first use (from the cache after the first time).
type Compiled struct {
	e    *Engine
	bin  []byte // as given: Trusted
	ibin []byte // instrumented: Sandboxed; nil when instrumentation failed
	// Sandboxed is how Sandboxed code runs: instrumented or guarded.
	sandboxed variant

	// What the module exports, checked at compile time.
	HasOnOpen, HasOnClose, HasOnTimer, HasInitialize bool
	// V2Imports lists the ABI v2 host functions the module imports: a
	// guest that answers version 1 to the handshake may import none.
	V2Imports []string
	// MinMemory is the initial size of the module's memory, in bytes.
	MinMemory uint64

	mu     sync.Mutex
	mods   [3]wazero.CompiledModule // by variant
	closed bool
}

// signature of a function in WAT-like text, for error messages.
type signature struct {
	params, results []api.ValueType
}

// String renders the signature as WAT, e.g. (func (param i64) (result i32)).
func (s signature) String() string {
	var b strings.Builder
	b.WriteString("(func")
	if len(s.params) > 0 {
		b.WriteString(" (param")
		for _, p := range s.params {
			b.WriteString(" " + api.ValueTypeName(p))
		}
		b.WriteString(")")
	}
	if len(s.results) > 0 {
		b.WriteString(" (result")
		for _, p := range s.results {
			b.WriteString(" " + api.ValueTypeName(p))
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

func (s signature) matches(d api.FunctionDefinition) bool {
	return equalTypes(s.params, d.ParamTypes()) && equalTypes(s.results, d.ResultTypes())
}

func equalTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

type exportSpec struct {
	name     string
	sig      signature
	required bool
}

var exportSpecs = []exportSpec{
	{abi.ExportABIVersion, signature{nil, []api.ValueType{i32}}, true},
	{abi.ExportInit, signature{nil, []api.ValueType{i32}}, true},
	{abi.ExportOnOpen, signature{[]api.ValueType{i64}, []api.ValueType{i32}}, false},
	{abi.ExportOnData, signature{[]api.ValueType{i64, i32, i32, i32}, []api.ValueType{i32}}, true},
	{abi.ExportOnClose, signature{[]api.ValueType{i64}, nil}, false},
	{abi.ExportOnTimer, signature{[]api.ValueType{i64}, []api.ValueType{i32}}, false},
	{abi.ExportInitialize, signature{nil, nil}, false},
}

// Compile compiles bin for Sandboxed use and checks it against ABI v1:
// exported memory, the required exports with their exact signatures, imports
// only from "tunnel" (with their signatures) and WASI. Every problem found is
// reported.
func (e *Engine) Compile(ctx context.Context, bin []byte) (*Compiled, error) {
	if hasStartSection(bin) {
		// It would run at instantiation, before any time limit applies.
		return nil, errors.New(`module has a start function (a "start" section), which would run unbounded at instantiation: initialise in tunnel_init (or the WASI reactor's _initialize) instead`)
	}
	if err := checkCompileWork(bin); err != nil {
		return nil, err
	}
	c := &Compiled{e: e, bin: bin, sandboxed: guarded}
	ibin, unsandboxable := instrument(bin)
	if unsandboxable == nil && !e.noInstrument {
		c.ibin, c.sandboxed = ibin, instrumented
	}
	rt, err := e.runtime(ctx, c.sandboxed)
	if err != nil {
		return nil, err
	}
	src := c.code(c.sandboxed)
	unlock, err := e.compileLock(ctx, src)
	if err != nil {
		return nil, err
	}
	cm, err := rt.CompileModule(ctx, src)
	unlock()
	if err != nil && c.sandboxed == instrumented {
		// The instrumented form of a module that is itself invalid, we
		// expect: let the original's error speak.
		ierr := err
		c.ibin, c.sandboxed = nil, guarded
		if rt, err = e.runtime(ctx, guarded); err != nil {
			return nil, err
		}
		if cm, err = rt.CompileModule(ctx, bin); err == nil {
			unsandboxable = fmt.Errorf("its instrumented form does not compile: %w", ierr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("not a valid WebAssembly module: %w", err)
	}
	if err := c.check(cm); err != nil {
		cm.Close(ctx)
		return nil, err
	}
	if unsandboxable != nil && !e.noInstrument {
		// wazero's own guard (CloseOnContextDone) checks at loop heads
		// only: a guest that spins by calls alone (recursion, fan-out)
		// would never be cut off, and would stall the garbage collector,
		// hence the whole process. Refused rather than run unbounded.
		cm.Close(ctx)
		return nil, fmt.Errorf("the module cannot be given its per-call time limit (%w); the host runs no plugin without one", unsandboxable)
	}
	c.mods[c.sandboxed] = cm
	return c, nil
}

// Instrumented reports whether Sandboxed code runs instrumented: always,
// but for the guarded variant tests and benchmarks choose (wazero's
// CloseOnContextDone).
func (c *Compiled) Instrumented() bool { return c.sandboxed == instrumented }

func (c *Compiled) check(cm wazero.CompiledModule) error {
	var errs []error
	exports := cm.ExportedFunctions()
	for _, s := range exportSpecs {
		d, ok := exports[s.name]
		switch {
		case !ok && s.required:
			errs = append(errs, fmt.Errorf("missing export %q: want %s", s.name, s.sig))
		case !ok:
		case !s.sig.matches(d):
			got := signature{d.ParamTypes(), d.ResultTypes()}
			errs = append(errs, fmt.Errorf("export %q has signature %s, want %s", s.name, got, s.sig))
		default:
			switch s.name {
			case abi.ExportOnOpen:
				c.HasOnOpen = true
			case abi.ExportOnClose:
				c.HasOnClose = true
			case abi.ExportOnTimer:
				c.HasOnTimer = true
			case abi.ExportInitialize:
				c.HasInitialize = true
			}
		}
	}
	if _, ok := exports["_start"]; ok && !c.HasInitialize {
		errs = append(errs, errors.New(`module is a WASI command (it exports "_start"), not a reactor: build it with -buildmode=c-shared (Go: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared; clang: -mexec-model=reactor)`))
	}
	if mem, ok := cm.ExportedMemories()[abi.ExportMemory]; !ok {
		errs = append(errs, fmt.Errorf("missing export %q: want (memory (export %q) 1)", abi.ExportMemory, abi.ExportMemory))
	} else {
		c.MinMemory = uint64(mem.Min()) << 16
	}
	for _, d := range cm.ImportedFunctions() {
		mod, name, _ := d.Import()
		switch mod {
		case abi.WASIModule:
			// Checked by wazero at instantiation (it knows WASI's signatures).
		case abi.ImportModule:
			want, ok := hostSignatures[name]
			if !ok {
				errs = append(errs, fmt.Errorf("imports %q %q, which the host does not provide (ABI v%d)", mod, name, abi.Version))
			} else if !want.matches(d) {
				got := signature{d.ParamTypes(), d.ResultTypes()}
				errs = append(errs, fmt.Errorf("imports %q %q with signature %s, want %s", mod, name, got, want))
			} else if v2Imports[name] {
				c.V2Imports = append(c.V2Imports, name)
			}
		default:
			errs = append(errs, fmt.Errorf("imports %q %q: only modules %q and %q are provided", mod, name, abi.ImportModule, abi.WASIModule))
		}
	}
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		errs = append(errs, fmt.Errorf("imports memory %q %q: a plugin must define and export its own memory", mod, name))
	}
	if _, exported := exports[abi.ExportOnTimer]; slices.Contains(c.V2Imports, abi.ImportSetTimer) && !exported {
		// (Exported with another signature is reported above.)
		errs = append(errs, fmt.Errorf("imports %q %q but does not export %q: want %s", abi.ImportModule, abi.ImportSetTimer, abi.ExportOnTimer, `(func (export "tunnel_on_timer") (param i64) (result i32))`))
	}
	return errors.Join(errs...)
}

// checkVersion checks the guest's answer to the handshake against what the
// module imports.
func (c *Compiled) checkVersion(v int32) error {
	if v < abi.OldestVersion || v > abi.Version {
		return &VersionMismatch{Got: v}
	}
	if v < 2 && len(c.V2Imports) > 0 {
		return fmt.Errorf("imports %q %q, which is ABI v2, but %s returned %d", abi.ImportModule, c.V2Imports[0], abi.ExportABIVersion, v)
	}
	return nil
}

// module returns the compiled code for mode m and how it runs.
func (c *Compiled) module(ctx context.Context, m Mode) (wazero.CompiledModule, wazero.Runtime, variant, error) {
	v := plain
	if m == Sandboxed {
		v = c.sandboxed
	}
	rt, err := c.e.runtime(ctx, v)
	if err != nil {
		return nil, nil, v, err
	}
	c.mu.Lock()
	cm, err := c.compiledLocked(v)
	src := c.code(v)
	c.mu.Unlock()
	if cm != nil || err != nil {
		return cm, rt, v, err
	}
	// Another process may be compiling the same code into the cache:
	// wait for it without c.mu, which Close takes.
	unlock, err := c.e.compileLock(ctx, src)
	if err != nil {
		return nil, nil, v, fmt.Errorf("compile: %w", err)
	}
	defer unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if cm, err := c.compiledLocked(v); cm != nil || err != nil {
		return cm, rt, v, err // closed, or compiled meanwhile by another call
	}
	cm, err = rt.CompileModule(ctx, src)
	if err != nil {
		return nil, nil, v, fmt.Errorf("compile: %w", err)
	}
	c.mods[v] = cm
	return cm, rt, v, nil
}

// compiledLocked returns variant v's code when it is compiled (nil when
// not yet), or ErrClosed. Called with c.mu held.
func (c *Compiled) compiledLocked(v variant) (wazero.CompiledModule, error) {
	if c.closed {
		return nil, ErrClosed
	}
	return c.mods[v], nil
}

// code is the binary variant v is compiled from: the instrumented one, or
// the module as given.
func (c *Compiled) code(v variant) []byte {
	if v == instrumented {
		return c.ibin
	}
	return c.bin
}

// Close releases the compiled code. Instances made from it must be closed
// first.
func (c *Compiled) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for i, cm := range c.mods {
		if cm != nil {
			errs = append(errs, cm.Close(ctx))
			c.mods[i] = nil
		}
	}
	c.bin, c.ibin = nil, nil
	return errors.Join(errs...)
}

// hasStartSection reports whether bin, a WebAssembly binary, has a start
// section. A malformed binary reports false (the compiler rejects it).
func hasStartSection(bin []byte) bool {
	r := &reader{b: bin}
	if len(bin) < 8 {
		return false
	}
	r.off = 8
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		n := r.u32()
		if r.err != nil {
			return false
		}
		if id == 8 {
			return true
		}
		r.bytes(int(n))
	}
	return false
}
