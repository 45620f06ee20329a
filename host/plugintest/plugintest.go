// Package plugintest runs a plugin written with package sdk as compiled
// WebAssembly through the real host: it builds the plugin with
// `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`, loads it into a
// [plugin.Runtime] and puts it in the chain of a [host.Proxy] that listens on
// loopback, between a client and a server the test drives through real
// sockets. It implements the test API of package sdk/sdktest, so a plugin's
// tests, written once against an [sdktest.Starter], run twice:
//
//	func TestNative(t *testing.T) { testReplace(t, sdktest.Native) }
//	func TestWasm(t *testing.T)   { testReplace(t, plugintest.Wasm(t, ".")) }
//
// Chunk boundaries are kept: each Conn.Write reaches the plugin as one chunk
// (a native hook next to the plugin re-cuts what the socket delivers at the
// boundaries the test wrote), so tests of patterns split across chunks mean
// the same in both runs. Outputs are read from the sockets, so Read waits
// for the bytes (up to [Timeout]) and ReadAll for the end of stream.
package plugintest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/internal/flock"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
	"github.com/tunnelwasm/tunnel/internal/testkit"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// Timeout bounds every wait of a test step: bytes to arrive, an end of
// stream, a connection to be accepted.
var Timeout = 20 * time.Second

// Build compiles the Go package in dir (a plugin's package main) to a .wasm
// file and returns its bytes. Builds are cached per directory for the life
// of the test process, shared with the other test processes of the run
// (in [CacheDir]), and spared their compilation by the Go build cache
// across runs.
func Build(t testing.TB, dir string) []byte {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := builds.LoadOrStore(abs, &build{})
	b := v.(*build)
	b.once.Do(func() { b.wasm, b.err = goBuild(abs) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.wasm
}

type build struct {
	once sync.Once
	wasm []byte
	err  error
}

var builds sync.Map // absolute dir -> *build

// buildMu and buildLock make the builds of the run one at a time (in this
// process, and across every test process of the run through a lock file in
// [CacheDir]) until one has succeeded: on a cold Go build cache the first
// build compiles the standard library for wasip1 (about 8 s of CPU), which
// builds side by side would each compile. After that (a marker in
// CacheDir says so), builds of different plugins run side by side, about a
// second of linking each, and only builds of the same plugin wait for each
// other (a lock file per plugin), so that each is built once a run.
var buildMu sync.Mutex

func buildLock(name string) (unlock func(), cold bool) {
	dir := CacheDir()
	if dir == "" {
		buildMu.Lock()
		return buildMu.Unlock, false
	}
	warm := filepath.Join(dir, "build.warm")
	if _, err := os.Stat(warm); err != nil {
		buildMu.Lock()
		all := lockFile(filepath.Join(dir, "build.lock"))
		if _, err := os.Stat(warm); err != nil {
			return func() { all(); buildMu.Unlock() }, true
		}
		all()
		buildMu.Unlock()
	}
	return lockFile(filepath.Join(dir, "build-"+name+".lock")), false
}

// markWarm records that a build of the run succeeded (see buildLock).
func markWarm() {
	if dir := CacheDir(); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "build.warm"), nil, 0o644)
	}
}

// lockFile takes an exclusive lock on path and returns its release; when
// the lock cannot be had (or another process holds it past maxBuildWait),
// builds may run twice, which costs only time.
func lockFile(path string) (unlock func()) {
	if unlock := flock.Lock(context.Background(), path, maxBuildWait, nil); unlock != nil {
		return unlock
	}
	return func() {}
}

// maxBuildWait bounds the wait for another test process's build: a cold
// build under a loaded -race run takes a minute at most.
const maxBuildWait = 5 * time.Minute

func goBuild(dir string) ([]byte, error) {
	unlock, cold := buildLock(buildKey(dir))
	defer unlock()
	shared := sharedBuild(dir)
	if shared != "" {
		if b, err := os.ReadFile(shared); err == nil {
			return b, nil
		}
	}
	tmp, err := os.MkdirTemp("", "plugintest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "plugin.wasm")
	// go test puts its own GOROOT/bin first in PATH.
	// The flags of go generate ./plugins/builtin: the builds share the Go
	// build cache with its staleness test, and give the embedded bytes.
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("plugintest: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared in %s: %v\n%s", dir, err, msg)
	}
	if cold {
		markWarm()
	}
	b, err := os.ReadFile(out)
	if err == nil && shared != "" && os.MkdirAll(filepath.Dir(shared), 0o755) == nil {
		// Renamed into place: a process that finds the file finds all of it.
		if os.WriteFile(out+".tmp", b, 0o644) == nil {
			_ = os.Rename(out+".tmp", shared)
		}
	}
	return b, err
}

// sharedBuild is where the module built from dir is kept for the other
// test processes of this run (a plugin's own tests, the built-in
// plugins' staleness test and the CLI's tests each want the same
// module; linking one takes about a second of CPU), or "" when builds are
// not shared: with a TUNNEL_PLUGINTEST_CACHE kept across runs, whose
// sources may have changed since (the Go build cache still spares their
// compilation).
func sharedBuild(dir string) string {
	if os.Getenv("TUNNEL_PLUGINTEST_CACHE") != "" {
		return ""
	}
	d := CacheDir()
	if d == "" {
		return ""
	}
	return filepath.Join(d, "builds", buildKey(dir)+".wasm")
}

// buildKey names dir's build in CacheDir (its lock and shared module).
func buildKey(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:8])
}

// The runtime and compiled modules are shared by every test of the process:
// compiling a Go guest takes about half a second, instantiating it a few
// milliseconds.
var (
	rtOnce  sync.Once
	rt      *plugin.Runtime
	rtErr   error
	modMu   sync.Mutex
	modules = map[string]*plugin.Module{}
)

func module(t testing.TB, dir string) *plugin.Module {
	t.Helper()
	wasm := Build(t, dir)
	rtOnce.Do(func() {
		rt, rtErr = plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{
			CacheDir: CacheDir(),
			Logger:   slog.New(slog.DiscardHandler),
		})
	})
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	modMu.Lock()
	defer modMu.Unlock()
	abs, _ := filepath.Abs(dir)
	if m := modules[abs]; m != nil {
		return m
	}
	if testkit.Race {
		precompile(wasm)
	}
	m, err := rt.Compile(context.Background(), filepath.Base(abs), wasm)
	if err != nil {
		t.Fatal(err)
	}
	modules[abs] = m
	return m
}

// CacheDir is where compiled plugin code is kept (the
// RuntimeOptions.CacheDir the harness uses): wazero compiles a Go guest in
// about 3 s, and 10 times slower under -race, while loading it from the
// cache takes milliseconds. Other tests that compile Go guests can pass it
// to their Runtime too. By default it is a directory of this test run only,
// so that tests are hermetic: when the go command started this process
// (`go test ./...`), one directory for every test process of that go
// command, so that a guest used by several packages is compiled once a run:
// os.TempDir()/tunnel-plugintest-goPPID-START (the go command's pid and
// start time); otherwise one for this process, tunnel-plugintest-PID. It is
// made at the first call; the directories of processes that no longer run
// are removed then. TUNNEL_PLUGINTEST_CACHE names a directory to keep and
// share across runs instead (files are written atomically, so parallel
// test processes share it safely). Empty (in-memory cache) when no
// directory can be made.
func CacheDir() string {
	if d := os.Getenv("TUNNEL_PLUGINTEST_CACHE"); d != "" {
		return d
	}
	cacheOnce.Do(func() { cacheDir = processCacheDir() })
	return cacheDir
}

var (
	cacheOnce sync.Once
	cacheDir  string
)

const cachePrefix = "tunnel-plugintest-"

func processCacheDir() string {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), cachePrefix+"*"))
	for _, d := range old {
		// tunnel-plugintest-PID or tunnel-plugintest-goPID-START
		owner, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(filepath.Base(d), cachePrefix), "go"), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || pid == os.Getpid() || pid == os.Getppid() {
			continue
		}
		if processEnded(pid) {
			os.RemoveAll(d)
		}
	}
	name := cachePrefix + strconv.Itoa(os.Getpid())
	if start, ok := goParent(); ok {
		name = cachePrefix + "go" + strconv.Itoa(os.Getppid()) + "-" + start
	}
	d := filepath.Join(os.TempDir(), name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return ""
	}
	return d
}

// goParent reports whether the parent process is the go command (`go
// test` runs each package's test binary as its child), with the parent's
// start time (in clock ticks since boot), so that a reused pid names
// another directory. Linux only; elsewhere each test process has its own
// cache.
func goParent() (start string, ok bool) {
	ppid := strconv.Itoa(os.Getppid())
	comm, err := os.ReadFile("/proc/" + ppid + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return "", false
	}
	stat, err := os.ReadFile("/proc/" + ppid + "/stat")
	if err != nil {
		return "", false
	}
	// pid (comm) state ppid ...: field 22 is starttime; comm may hold
	// spaces, so count from its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return "", false
	}
	return fields[19], true
}

// Precompile puts the compiled code of a module (a Go guest, say) in
// [CacheDir] when this test process runs with the race detector, which
// slows wazero's compiler down about ten times: it compiles the module in
// a process built without it. A [plugin.Runtime] with CacheDir then loads
// the code instead of compiling it. Without -race it does nothing.
func Precompile(wasm []byte) {
	if testkit.Race {
		precompile(wasm)
	}
}

// precompile fills the compilation cache from an uninstrumented process
// (see internal/precompile for why it is a
// test binary). Failures are ignored: the test process then
// compiles the module itself, only slower.
//
// Each module is precompiled once per cache: a marker named by its sha256
// under dir/precompiled says it was, for the other test processes of the
// run too (starting the go command for a module already in the cache
// costs a second or two).
func precompile(wasm []byte) {
	dir := CacheDir()
	if dir == "" {
		return
	}
	sum := sha256.Sum256(wasm)
	marker := filepath.Join(dir, "precompiled", hex.EncodeToString(sum[:]))
	if _, err := os.Stat(marker); err == nil {
		return
	}
	f, err := os.CreateTemp("", "plugintest-*.wasm")
	if err != nil {
		return
	}
	defer os.Remove(f.Name())
	_, err = f.Write(wasm)
	if cerr := f.Close(); err != nil || cerr != nil {
		return
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "^$", "github.com/tunnelwasm/tunnel/host/plugintest/internal/precompile")
	cmd.Env = append(os.Environ(), "GOFLAGS=", // no -race from the environment
		"PRECOMPILE_CACHE="+dir, "PRECOMPILE_MODULE="+f.Name())
	if cmd.Run() == nil && os.MkdirAll(filepath.Dir(marker), 0o755) == nil {
		_ = os.WriteFile(marker, nil, 0o644)
	}
}

// Options adds the host's settings to sdktest.Options.
type Options struct {
	// Plugin is handed to Module.NewPlugin; Config, Stdout and Logger are
	// set by the harness. Instances defaults to 1, as in the emulator, so
	// plugin-wide state behaves the same in both runs; MemoryLimit defaults
	// to [DefaultMemoryLimit].
	Plugin plugin.Options
}

// DefaultMemoryLimit is the memory limit plugins are tested with, a quarter
// of the host's default: a plugin that passes its tests here has room to
// spare in production. A Go guest starts with about 2.6 MiB of linear
// memory; one that allocates nothing per chunk runs in 4 MiB, one that
// allocates 30 KiB per call needs 8 MiB.
const DefaultMemoryLimit = 16 << 20

// Wasm returns the [sdktest.Starter] that runs the plugin in dir (a Go
// package main using package sdk) compiled to WebAssembly, through a real
// tunnel on loopback. The build happens at the first start.
func Wasm(t testing.TB, dir string) sdktest.Starter {
	return WasmWith(t, dir, Options{})
}

// WasmWith is [Wasm] with host settings (memory limit, instances, ...).
func WasmWith(_ testing.TB, dir string, o Options) sdktest.Starter {
	return func(t testing.TB, opts sdktest.Options) (sdktest.Plugin, error) {
		t.Helper()
		return start(t, dir, o, opts)
	}
}

func start(t testing.TB, dir string, o Options, opts sdktest.Options) (sdktest.Plugin, error) {
	t.Helper()
	m := module(t, dir)
	p := &wasmPlugin{t: t, accepted: make(chan net.Conn, 1), pending: make(chan *splitState, 1)}
	po := o.Plugin
	if po.Instances == 0 {
		po.Instances = 1 // like the emulator: one instance sees every connection
	}
	if po.MemoryLimit == 0 {
		po.MemoryLimit = DefaultMemoryLimit
	}
	p.clock.d.Store(int64(time.Hour)) // like the emulator's: not zero
	if po.Clock == nil {
		po.Clock = &p.clock
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.server = ln
	po.Config = []byte(strings.ReplaceAll(opts.Config, sdktest.Server, ln.Addr().String()))
	po.Stdout = &p.stdout
	po.Logger = slog.New(&p.logs)
	plug, err := m.NewPlugin(context.Background(), po)
	if err != nil {
		var ce *plugin.ConfigError
		ln.Close()
		if errors.As(err, &ce) {
			return nil, errors.New(ce.Message)
		}
		t.Fatalf("plugintest: loading the plugin: %v", err)
	}
	route := opts.Route
	if route == "" {
		route = "test"
	}
	p.lateDial = opts.LateDial
	p.plug = plug // inspect.go
	p.proxy = &host.Proxy{Logger: slog.New(&p.closes)}
	p.split = &splitHook{p: p}
	split := p.split
	err = p.proxy.Apply([]host.Route{{
		Name:     route,
		Listen:   "127.0.0.1:0",
		Target:   ln.Addr().String(),
		LateDial: opts.LateDial,
		Chain: []host.Link{
			{Name: "plugintest-client-side", Hook: split},
			{Name: m.Name(), Hook: &watchHook{p: p, plug: plug}},
			{Name: "plugintest-server-side", Hook: split},
		},
		OnRelease: func() { plug.Close() },
	}})
	if err != nil {
		plug.Close()
		ln.Close()
		t.Fatal(err)
	}
	p.addr = p.proxy.Addr(route).String()
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.cleanup)
	return p, nil
}

// wasmPlugin is a plugin instance behind a real Proxy.
type wasmPlugin struct {
	t        testing.TB
	proxy    *host.Proxy
	server   net.Listener
	addr     string
	accepted chan net.Conn
	wg       sync.WaitGroup
	stdout   testkit.Buffer
	logs     logCapture

	clock    manualClock
	closes   closeLog
	lateDial bool
	plug     *plugin.Plugin // its shared state and metrics (inspect.go)

	pending chan *splitState // the state of the connection being opened
	split   *splitHook

	timerMu sync.Mutex
	timers  notifier // of each call of the plugin's Timer (Advance waits on them)

	mu    sync.Mutex
	conns []*wasmConn
}

func (p *wasmPlugin) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.server.Accept()
		if err != nil {
			return
		}
		p.accepted <- c
	}
}

func (p *wasmPlugin) cleanup() {
	p.mu.Lock()
	conns := p.conns
	p.mu.Unlock()
	for _, c := range conns {
		c.shut()
	}
	p.proxy.Close() // closes the plugin too: the Proxy owns its hooks
	p.server.Close()
	p.wg.Wait()
	close(p.accepted)
	for c := range p.accepted {
		c.Close()
	}
	for _, c := range conns {
		c.readers.Wait()
	}
}

func (p *wasmPlugin) Open() sdktest.Conn {
	t := p.t
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &wasmConn{p: p}
	cc, err := net.Dial("tcp", p.addr)
	switch {
	case err == nil:
		c.client = cc.(*net.TCPConn)
		c.out[sdk.ServerToClient] = newSink(cc)
		c.readers.Add(1)
		go c.out[sdk.ServerToClient].run(&c.readers)
	case errors.Is(err, syscall.ECONNRESET):
		// Refused so fast that the reset beat the end of connect.
		c.out[sdk.ServerToClient] = closedSink()
	default:
		t.Fatalf("plugintest: dialling the tunnel: %v", err)
	}
	p.conns = append(p.conns, c)
	// The first hook of the chain reports the connection's id and state;
	// then either the target is dialled or the connection is refused.
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case c.split = <-p.pending:
	case <-timer.C:
		t.Fatalf("plugintest: the tunnel did not open the connection within %s", Timeout)
	}
	c.id = c.split.id
	// The plugin's Opened (tunnel_on_open) has returned, or the
	// connection ends without it (a plugin that refuses it).
	select {
	case <-c.split.opened:
	case <-c.split.closed:
	case <-c.out[sdk.ServerToClient].eofCh:
	case <-timer.C:
		t.Fatalf("plugintest: the plugin's Opened did not return within %s", Timeout)
	}
	if !p.lateDial {
		c.awaitServer(timer.C)
	}
	return c
}

// awaitServer waits for the tunnel to dial the test's server, or to close
// the client without dialling.
func (c *wasmConn) awaitServer(timeout <-chan time.Time) {
	if c.out[sdk.ClientToServer] != nil {
		return
	}
	select {
	case sc := <-c.p.accepted:
		c.server = sc.(*net.TCPConn)
		c.out[sdk.ClientToServer] = newSink(sc)
		c.readers.Add(1)
		go c.out[sdk.ClientToServer].run(&c.readers)
	case <-c.out[sdk.ServerToClient].eofCh:
		// refused (or closed at once): no target
		c.out[sdk.ClientToServer] = closedSink()
	case <-timeout:
		c.p.t.Fatalf("plugintest: the target was not dialled within %s", Timeout)
	}
}

// server waits, on a late-dial route, for the dial the plugin's choice
// triggers.
func (c *wasmConn) serverSide() {
	if c.out[sdk.ClientToServer] == nil {
		timer := time.NewTimer(Timeout)
		defer timer.Stop()
		c.awaitServer(timer.C)
	}
}

// Target implements sdktest.Conn: the test's server once it was dialled.
func (c *wasmConn) Target() string {
	if c.p.lateDial && c.out[sdk.ClientToServer] == nil {
		select {
		case sc := <-c.p.accepted:
			c.p.accepted <- sc // not ours to take yet: put it back
			c.serverSide()
		default:
			return ""
		}
	}
	if c.server == nil {
		return ""
	}
	return c.p.server.Addr().String()
}

// ReadPaused implements sdktest.Conn: what the plugin's last callback left.
func (c *wasmConn) ReadPaused(dir sdk.Direction) bool {
	checkDir(c.p.t, dir)
	st := c.split
	st.seenMu.Lock()
	defer st.seenMu.Unlock()
	return st.paused[dir]
}

// Tag implements sdktest.Conn: the tag as the close log line shows it.
func (c *wasmConn) Tag(key string) (string, bool) {
	return c.p.closes.tag(c.p.t, c.id, key)
}

// Advance implements sdktest.Plugin: moves the plugin's clock and returns
// once the timers that came due have fired.
func (p *wasmPlugin) Advance(d time.Duration) {
	if d < 0 {
		p.t.Fatalf("plugintest: Advance(%v): the clock does not go back", d)
	}
	now := time.Duration(p.clock.d.Add(int64(d)))
	// The host's timers look at the clock every millisecond: wait until
	// the ones due by now have fired, as the emulator fires them before
	// its Advance returns, so that what the test does next (End, say)
	// comes after them. A timer that fired holds its connection until its
	// callback returns, so the connection's next events follow it.
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		p.timerMu.Lock()
		fired := p.timers.next() // before the count: a call after it ends the wait
		p.timerMu.Unlock()
		due := plugstats.TimersDue(p.plug, now)
		if due == 0 {
			return
		}
		select {
		case <-fired:
		case <-deadline.C:
			p.t.Fatalf("plugintest: Advance(%v): %d timers due did not fire within %v", d, due, Timeout)
		}
	}
}

// manualClock is the plugin's clock under test (plugin.Options.Clock).
type manualClock struct{ d atomic.Int64 }

// Now implements plugin.Clock.
func (m *manualClock) Now() time.Duration { return time.Duration(m.d.Load()) }

// closeLog keeps the tags of the proxy's "connection closed" lines, by
// connection id.
type closeLog struct {
	mu     sync.Mutex
	tags   map[uint64]map[string]string
	notify notifier // of tags
}

func (l *closeLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *closeLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *closeLog) WithGroup(string) slog.Handler            { return l }

func (l *closeLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "connection closed" {
		return nil
	}
	var id uint64
	tags := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case a.Key == "conn":
			id = a.Value.Uint64()
		case a.Key == "tag" && a.Value.Kind() == slog.KindGroup:
			for _, g := range a.Value.Group() {
				tags[g.Key] = g.Value.String()
			}
		}
		return true
	})
	l.mu.Lock()
	if l.tags == nil {
		l.tags = map[uint64]map[string]string{}
	}
	l.tags[id] = tags
	l.notify.changed()
	l.mu.Unlock()
	return nil
}

// tag waits for conn's close line and returns its tag key.
func (l *closeLog) tag(t testing.TB, conn uint64, key string) (string, bool) {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		tags, ok := l.tags[conn]
		ch := l.notify.next()
		l.mu.Unlock()
		if ok {
			v, set := tags[key]
			return v, set
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("plugintest: Tag: connection #%d was not closed within %s (call Wait first)", conn, Timeout)
		}
	}
}

func (p *wasmPlugin) Logs() []sdktest.Log { return p.logs.get() }

func (p *wasmPlugin) Stdout() []byte { return p.stdout.Bytes() }

// wasmConn is one connection through the tunnel.
type wasmConn struct {
	p       *wasmPlugin
	id      uint64
	split   *splitState
	client  *net.TCPConn
	server  *net.TCPConn // nil when the target was never dialled
	out     [2]*sink     // by direction: what arrived at its destination
	ended   [2]bool
	readers sync.WaitGroup
}

func (c *wasmConn) ID() uint64 { return c.id }

func (c *wasmConn) src(dir sdk.Direction) *net.TCPConn {
	if dir == sdk.ClientToServer {
		return c.client
	}
	return c.server
}

func closeSock(c *net.TCPConn, reset bool) {
	if c == nil {
		return
	}
	if reset {
		_ = c.SetLinger(0)
	}
	_ = c.Close()
}

func checkDir(t testing.TB, dir sdk.Direction) {
	t.Helper()
	if dir != sdk.ClientToServer && dir != sdk.ServerToClient {
		t.Fatalf("plugintest: invalid direction %d", dir)
	}
}

func (c *wasmConn) Write(dir sdk.Direction, b []byte) {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	if c.ended[dir] {
		t.Fatalf("plugintest: Write(%s) after End(%s)", dir, dir)
	}
	if dir == sdk.ServerToClient {
		c.serverSide()
	}
	s := c.src(dir)
	if s == nil {
		return // the connection was refused: nothing to write to
	}
	if len(b) > 0 {
		c.split.plan(dir, len(b))
		// Errors mean the tunnel closed the connection: like the
		// emulator, the bytes are lost.
		if _, err := s.Write(b); err != nil {
			return
		}
	}
	// Like the emulator's, Write returns once the plugin has seen the
	// bytes (or the connection is gone or closing), so that an Advance
	// after it moves the clock after the plugin's OnData.
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	if c.split.awaitShown(dir, timer.C) == waitTimeout {
		t.Logf("plugintest: Write(%s): the plugin was not shown the bytes within %s", dir, Timeout)
	}
}

func (c *wasmConn) End(dir sdk.Direction) {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	if c.ended[dir] {
		t.Fatalf("plugintest: End(%s) called twice", dir)
	}
	c.ended[dir] = true
	if dir == sdk.ServerToClient {
		c.serverSide()
	}
	s := c.src(dir)
	if s == nil {
		return
	}
	if s.CloseWrite() != nil {
		return // the tunnel closed the connection
	}
	// Like the emulator's, End returns once the plugin has seen the end
	// (or the connection is gone), so that an Advance after it moves the
	// clock after the plugin saw it (OnData with end set): a delay the
	// plugin arms there counts from before the Advance. A filter's close (a
	// reset, a timeout) ends both streams toward the peers without showing
	// the plugin this end: that ends the wait too. One stream ending is not
	// enough: a plugin that half-closed dir itself is still shown its end.
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for _, out := range c.out {
		if out == nil {
			continue // not dialled (late dial): nothing to wait for there
		}
		switch c.split.awaitEnd(dir, out.eofCh, timer.C) {
		case waitTimeout:
			t.Logf("plugintest: End(%s): the plugin was not shown the end within %s", dir, Timeout)
			return
		case waitDone, waitClosed:
			return
		}
	}
}

func (c *wasmConn) Read(dir sdk.Direction, n int) []byte {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	c.serverSide()
	b, err := c.out[dir].read(n)
	if err != nil {
		t.Fatalf("plugintest: want %d bytes %s: %v", n, dir, err)
	}
	return b
}

func (c *wasmConn) ReadAll(dir sdk.Direction) []byte {
	t := c.p.t
	t.Helper()
	checkDir(t, dir)
	c.serverSide()
	b, err := c.out[dir].readAll()
	if err != nil {
		t.Fatalf("plugintest: ReadAll(%s): %v", dir, err)
	}
	return b
}

func (c *wasmConn) Wait() {
	t := c.p.t
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	if c.out[sdk.ClientToServer] != nil && c.out[sdk.ServerToClient] != nil {
		// Hang up once both streams toward the peers have ended, which
		// may be a moment after the tunnel ended them (their readers
		// see the FINs on goroutines of their own).
		for _, s := range c.out {
			select {
			case <-s.eofCh:
			case <-c.split.closed:
				return
			case <-timer.C:
				t.Fatalf("plugintest: Wait: connection #%d was not closed within %s", c.id, Timeout)
			}
		}
		c.hangUp()
	}
	select {
	case <-c.split.closed:
	case <-timer.C:
		t.Fatalf("plugintest: Wait: connection #%d was not closed within %s", c.id, Timeout)
	}
}

// hangUp is what the test's client and server do once the tunnel has
// ended both streams toward them (a filter's Close, or each direction
// ended): like most peers that have nothing left to read, they end their
// own side. Without it the tunnel, which after a filter's Close keeps
// reading for a while so that the bytes it delivered are not lost to a
// reset, would wait out that linger (2 s) before Wait sees the connection
// gone. A connection with a stream still open toward either peer is left
// as it is: Wait then fails as in the emulator.
func (c *wasmConn) hangUp() {
	for _, s := range c.out {
		if s == nil || !s.ended() {
			return
		}
	}
	for _, dir := range []sdk.Direction{sdk.ClientToServer, sdk.ServerToClient} {
		if s := c.src(dir); s != nil && !c.ended[dir] {
			_ = s.CloseWrite()
		}
	}
}

func (c *wasmConn) Abort() {
	c.shut()
}

func (c *wasmConn) shut() {
	closeSock(c.client, true)
	closeSock(c.server, false)
}

// sink collects what arrives on one socket.
type sink struct {
	mu     sync.Mutex
	buf    []byte
	off    int // bytes already returned by read
	eof    bool
	err    error
	notify notifier // of buf, eof and err
	eofCh  chan struct{}
	conn   net.Conn
}

func newSink(c net.Conn) *sink {
	return &sink{conn: c, eofCh: make(chan struct{})}
}

func closedSink() *sink {
	s := newSink(nil)
	s.eof = true
	close(s.eofCh)
	return s
}

func (s *sink) run(wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		s.mu.Lock()
		s.buf = append(s.buf, buf[:n]...)
		if err != nil {
			s.eof = true
			if !errors.Is(err, io.EOF) {
				s.err = err
			}
			close(s.eofCh)
		}
		s.notify.changed()
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// wait waits until cond holds (checked under s.mu) or Timeout.
func (s *sink) wait(cond func() bool) bool {
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.notify.next()
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// ended reports whether the stream has ended (or the socket failed).
func (s *sink) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eof
}

func (s *sink) read(n int) ([]byte, error) {
	ok := s.wait(func() bool { return len(s.buf)-s.off >= n || s.eof })
	s.mu.Lock()
	defer s.mu.Unlock()
	avail := s.buf[s.off:]
	if len(avail) < n {
		why := fmt.Sprintf("nothing more came within %s", Timeout)
		if ok {
			why = "the stream ended"
		}
		return nil, fmt.Errorf("only %d arrived (%s): %q", len(avail), why, avail)
	}
	s.off += n
	return bytes.Clone(avail[:n]), nil
}

func (s *sink) readAll() ([]byte, error) {
	if !s.wait(func() bool { return s.eof }) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return nil, fmt.Errorf("the stream did not end within %s (%d bytes arrived: %.200q)", Timeout, len(s.buf)-s.off, s.buf[s.off:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	avail := s.buf[s.off:]
	s.off = len(s.buf)
	return bytes.Clone(avail), nil
}

// logCapture is a slog.Handler that keeps the messages: the plugin's, and
// the host's about it, whose callback and cause it keeps too ("plugin
// failed callback=tunnel_on_data cause=…"): without them a test of a
// plugin that fails sees no why.
type logCapture struct {
	mu   sync.Mutex
	logs []sdktest.Log
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "callback" || a.Key == "cause" {
			msg += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logs = append(l.logs, sdktest.Log{Level: sdk.Level(r.Level), Msg: msg})
	return nil
}

func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

func (l *logCapture) get() []sdktest.Log {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sdktest.Log(nil), l.logs...)
}
