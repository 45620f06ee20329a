package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// Most tests run in parallel: each has its own Runner (runtime, watcher,
// temporary directory, loopback ports). They mostly wait (debounced file
// events, reloads, loopback round trips), so more of them than the two
// cores run at once. Serial: TestReloadNoGrowth (counts the process's
// goroutines), TestParseErrors (t.Setenv), TestReloadNotStarvedByNeighbour
// (bounds a reload's latency) and TestReloadUnderLoad (its clients run flat
// out until its reloads are done: slowed down by the others, it burns the
// CPU they need).
func TestMain(m *testing.M) {
	testkit.DefaultParallel(8)
	goleak.VerifyTestMain(m)
}

// echoServer accepts on loopback and echoes every connection until the test
// ends.
func echoServer(t *testing.T) string {
	t.Helper()
	return serve(t, func(c net.Conn) { io.Copy(c, c) })
}

// serve accepts on loopback and runs handle on each connection, closing it
// after, until the test ends; it returns the address.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	conns := map[net.Conn]bool{}
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename, as editors and deploy tools do, so a reader never
	// sees half a file.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// stampConfig is a file with one route through the stamp guest (in dir as
// plugin.wasm), stamping with the JSON of stamp.
func stampConfig(target, stamp string) string {
	return fmt.Sprintf(`
plugin "p" {
  path = "plugin.wasm"
}
route "r" {
  listen = "127.0.0.1:0"
  target = %q
  chain {
    plugin = plugin.p
    config = %q
  }
}
`, target, stamp)
}

type harness struct {
	t       *testing.T
	dir     string
	path    string
	r       *Runner
	reloads chan Reload
	hup     chan os.Signal
	log     *testkit.Buffer
	cancel  context.CancelFunc
	done    chan error
}

// start writes config to a fresh directory (with stamp.wasm as plugin.wasm)
// and runs it.
func start(t *testing.T, config string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), reloads: make(chan Reload, 100), hup: make(chan os.Signal, 1), log: &testkit.Buffer{}, done: make(chan error, 1)}
	h.path = filepath.Join(h.dir, "tunnel.hcl")
	copyFile(t, "testdata/wasm/stamp.wasm", filepath.Join(h.dir, "plugin.wasm"))
	writeFile(t, h.path, config)
	h.r = &Runner{
		Path:     h.path,
		Logger:   slog.New(slog.NewTextHandler(h.log, nil)),
		OnReload: func(r Reload) { h.reloads <- r },
		Debounce: 20 * time.Millisecond,
		// Compiled plugins are kept in the run's cache (plugintest): a
		// reload that builds a new plugin from the same module, or a
		// built-in another test or package compiled, loads its code
		// instead of compiling it again.
		Runtime: plugin.RuntimeOptions{CacheDir: plugintest.CacheDir()},
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if err := h.r.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	go func() { h.done <- h.r.Run(ctx, h.hup) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.r.Shutdown(ctx); err != nil {
		h.t.Errorf("Shutdown: %v", err)
	}
}

// waitReload waits for the next reload attempt.
func (h *harness) waitReload() Reload {
	h.t.Helper()
	select {
	case r := <-h.reloads:
		return r
	case <-time.After(hangBound): // a hostile file may take that long to refuse on a busy machine
		h.t.Fatalf("no reload happened within %v; log:\n%s", hangBound, h.log.String())
	}
	return Reload{}
}

// waitRefused waits for the next reload and checks that it failed with a
// *LoadError of exactly the diagnostics want ("line: severity: summary",
// comma-separated), which it returns.
func (h *harness) waitRefused(want string) *LoadError {
	h.t.Helper()
	r := h.waitReload()
	var le *LoadError
	if !errors.As(r.Err, &le) {
		h.t.Fatalf("reload = %+v, want a *LoadError", r)
	}
	if got := gotDiags(le.Diags); strings.Join(got, ",") != want {
		h.t.Fatalf("diagnostics %v, want %s\n%s", got, want, le)
	}
	return le
}

func (h *harness) addr() string {
	h.t.Helper()
	a := h.r.Addr("r")
	if a == nil {
		h.t.Fatal("route r is not listening")
	}
	return a.String()
}

// roundTrip sends msg on c and reads back want (the echo through the chain).
func roundTrip(t *testing.T, c net.Conn, msg, want string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestReloadKeepsOpenConnections: a connection opened before a reload keeps
// its chain byte-exact; one opened after sees the new config; the listener is
// the same socket.
func TestReloadKeepsOpenConnections(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "v1:"))
	addr := h.addr()
	old := dial(t, addr)
	roundTrip(t, old, "hello", `"v1:"hello`)

	writeFile(t, h.path, stampConfig(target, "v2:"))
	if r := h.waitReload(); r.Err != nil || r.Trigger != "file change" || r.Routes != 1 {
		t.Fatalf("reload = %+v", r)
	}
	if h.addr() != addr {
		t.Fatalf("listener moved from %s to %s", addr, h.addr())
	}
	roundTrip(t, old, "again", `"v1:"again`)
	fresh := dial(t, addr)
	roundTrip(t, fresh, "new", `"v2:"new`)
	roundTrip(t, old, "still", `"v1:"still`)
	if s := plugstats.Runtime(h.r.rt); s.Plugins != 2 {
		t.Errorf("while the old connection is open the runtime holds %+v, want both versions' plugins", s)
	}
	// The old version's plugin is closed once its last connection ends.
	old.Close()
	deadline := time.Now().Add(10 * time.Second)
	for plugstats.Runtime(h.r.rt).Plugins != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("old connection closed, but the runtime still holds %+v, want the new plugin only", plugstats.Runtime(h.r.rt))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReloadOnSIGHUP: the hup channel reloads even when no file changed.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "a"))
	h.hup <- os.Interrupt // any signal value on the channel means SIGHUP
	if r := h.waitReload(); r.Err != nil || r.Trigger != "SIGHUP" {
		t.Fatalf("reload = %+v", r)
	}
	if !strings.Contains(h.log.String(), `msg="configuration reloaded" trigger=SIGHUP`) {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

// TestReloadPluginFileReplaced: replacing the .wasm (not the config) reloads,
// and connections opened afterwards run the new code.
func TestReloadPluginFileReplaced(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "s"))
	addr := h.addr()
	before := dial(t, addr)
	roundTrip(t, before, "x", `"s"x`)

	copyFile(t, "testdata/wasm/noop.wasm", filepath.Join(h.dir, "plugin.wasm"))
	if r := h.waitReload(); r.Err != nil || r.Trigger != "file change" {
		t.Fatalf("reload = %+v", r)
	}
	roundTrip(t, dial(t, addr), "plain", "plain")
	roundTrip(t, before, "y", `"s"y`)
}

// TestReloadBrokenEditChangesNothing: an invalid edit is logged with its
// position and the running configuration keeps serving, old and new
// connections alike; fixing the file applies it.
func TestReloadBrokenEditChangesNothing(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "ok"))
	addr := h.addr()
	c := dial(t, addr)
	roundTrip(t, c, "1", `"ok"1`)

	broken := strings.Replace(stampConfig(target, "bad!"), `listen = "127.0.0.1:0"`, `listen = "127.0.0.1"`, 1)
	writeFile(t, h.path, broken)
	h.waitRefused("10: error: Plugin rejected its config,6: error: Invalid listen address")
	log := h.log.String()
	for _, want := range []string{
		`level=ERROR msg="configuration error" at=` + h.path + `:6:12 summary="Invalid listen address"`,
		`msg="reload failed; keeping the running configuration" trigger="file change"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if h.addr() != addr {
		t.Fatal("listener changed")
	}
	roundTrip(t, c, "2", `"ok"2`)
	roundTrip(t, dial(t, addr), "3", `"ok"3`)

	writeFile(t, h.path, stampConfig(target, "fixed"))
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload = %+v", r)
	}
	roundTrip(t, dial(t, addr), "4", `"fixed"4`)
}

// TestReloadUnderLoad: clients keep connecting and exchanging bytes while the
// file is reloaded again and again; no connection fails, and exchanges
// complete between every two reloads.
func TestReloadUnderLoad(t *testing.T) {
	target := echoServer(t)
	h := start(t, stampConfig(target, "0"))
	addr := h.addr()
	load := testkit.StartLoad(4, func(w, n int) error { return exchange(addr, fmt.Sprintf("w%d-%d", w, n)) })
	for i := 1; i <= 20; i++ {
		h.hup <- os.Interrupt
		if r := h.waitReload(); r.Err != nil {
			t.Fatalf("reload %d: %v", i, r.Err)
		}
		// Forget exchanges counted before, then see a few more complete.
		load.Forget()
		load.Wait(t, 4, 20*time.Second)
	}
	for _, err := range load.Stop() {
		t.Error(err)
	}
}

// exchange opens a connection, sends msg and checks the stamped echo.
func exchange(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	want := `"0"` + msg
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("%s: %w (got %q)", msg, err, got)
	}
	if string(got) != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

// TestReloadNoGrowth: 100 reloads leave no goroutines, plugins or modules
// behind.
func TestReloadNoGrowth(t *testing.T) {
	target := echoServer(t)
	h := start(t, stampConfig(target, "g"))
	addr := h.addr()
	c := dial(t, addr)
	roundTrip(t, c, "warm", `"g"warm`)
	c.Close()
	for i := 0; i < 3; i++ {
		h.hup <- os.Interrupt
		h.waitReload()
	}
	base := steadyGoroutines()
	for i := 0; i < 100; i++ {
		h.hup <- os.Interrupt
		if r := h.waitReload(); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	c = dial(t, addr)
	roundTrip(t, c, "after", `"g"after`)
	c.Close()
	n := settledGoroutines(base)
	t.Logf("goroutines: %d before, %d after", base, n)
	if n > base+2 {
		t.Errorf("goroutines grew from %d to %d over 100 reloads", base, n)
	}
	if s := plugstats.Runtime(h.r.rt); s.Modules != 1 || s.Plugins != 1 || s.Instances != 1 {
		t.Errorf("after 100 reloads the runtime holds %+v, want 1 module, 1 plugin, 1 instance", s)
	}
	if n := len(h.r.builder.modules); n != 1 {
		t.Errorf("builder keeps %d compiled modules, want 1", n)
	}
}

// steadyGoroutines returns the goroutine count once it has not changed for
// 100 ms (bounded by 2 s): the baseline, taken after the warm-up reloads'
// goroutines are gone. (Waiting for it to come down to zero, which it
// never does, took the whole 2 s.)
func steadyGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for i := 0; i < 200 && same < 10; i++ {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// settledGoroutines waits (bounded) for the goroutine count to come down to
// at most want, and returns it.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 200 && n > want; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// TestStartInvalid: an invalid file listens on nothing and says why.
func TestStartInvalid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	writeFile(t, path, `route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  colour = "red"
}
`)
	r := &Runner{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err := r.Start(context.Background())
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Start = %v, want a *LoadError", err)
	}
	want := path + `:4:3: error: Unsupported argument
  4 |   colour = "red"
    |   ^^^^^^
    hint: An argument named "colour" is not expected here.
`
	if le.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", le.Error(), want)
	}
	if r.Addr("r") != nil {
		t.Error("route r listens")
	}
	if err := r.Run(context.Background(), nil); err == nil {
		t.Error("Run after a failed Start did not fail")
	}
}

// TestLongConnectionSurvivesReload: a connection streaming through the noop
// guest while the plugin file is replaced by the stamping guest (and the
// file reloaded) keeps its chain: every byte comes back exactly, while a
// connection opened after the reload is stamped.
func TestLongConnectionSurvivesReload(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "new"))
	copyFile(t, "testdata/wasm/noop.wasm", filepath.Join(h.dir, "plugin.wasm"))
	if r := h.waitReload(); r.Err != nil {
		t.Fatal(r.Err)
	}
	addr := h.addr()
	c := dial(t, addr).(*net.TCPConn)
	c.SetDeadline(time.Now().Add(60 * time.Second))

	const total = 8 << 20
	data := make([]byte, total)
	rand.NewChaCha8([32]byte{1}).Read(data)
	want := sha256.Sum256(data)
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.CloseWrite()
		writeErr <- err
	}()
	// Read the first MiB, swap the plugin for the stamping one mid-stream,
	// then read the rest.
	h256 := sha256.New()
	if _, err := io.CopyN(h256, c, 1<<20); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "testdata/wasm/stamp.wasm", filepath.Join(h.dir, "plugin.wasm"))
	if r := h.waitReload(); r.Err != nil {
		t.Fatal(r.Err)
	}
	roundTrip(t, dial(t, addr), "x", `"new"x`)
	n, err := io.Copy(h256, c)
	if err != nil || n != total-1<<20 {
		t.Fatalf("read %d more bytes, %v", n, err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if got := h256.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("sha256 of the echo %x, want %x", got, want)
	}
}

// TestReloadSymlinkSwap: Kubernetes mounts a ConfigMap as
// tunnel.hcl -> ..data/tunnel.hcl and updates it by swapping the ..data
// symlink; no event names tunnel.hcl, yet the content changed and the file
// is reloaded.
func TestReloadSymlinkSwap(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "v1"))
	version := func(name, stamp string) {
		if err := os.Mkdir(filepath.Join(h.dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(h.dir, name, "tunnel.hcl"), stampConfig(target, stamp))
		if err := os.Symlink(name, filepath.Join(h.dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(h.dir, "..data_tmp"), filepath.Join(h.dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v2", "v2")
	// tunnel.hcl becomes a symlink, atomically.
	if err := os.Symlink(filepath.Join("..data", "tunnel.hcl"), h.path+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(h.path+".tmp", h.path); err != nil {
		t.Fatal(err)
	}
	if r := h.waitReload(); r.Err != nil {
		t.Fatal(r.Err)
	}
	roundTrip(t, dial(t, h.addr()), "a", `"v2"a`)
	version("..v3", "v3")
	if r := h.waitReload(); r.Err != nil {
		t.Fatal(r.Err)
	}
	roundTrip(t, dial(t, h.addr()), "b", `"v3"b`)
}

// TestReloadAddsAndRemovesRoutes: a route that leaves the file stops
// listening, one that appears starts, the one that stays keeps its socket.
func TestReloadAddsAndRemovesRoutes(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	route := func(name, listen string) string {
		return fmt.Sprintf("route %q {\n  listen = %q\n  target = %q\n}\n", name, listen, target)
	}
	h := start(t, route("r", "127.0.0.1:0")+route("gone", "127.0.0.2:0"))
	addr := h.addr()
	gone := h.r.Addr("gone").String()
	roundTrip(t, dial(t, gone), "a", "a")

	writeFile(t, h.path, route("r", "127.0.0.1:0")+route("new", "127.0.0.3:0"))
	if r := h.waitReload(); r.Err != nil || r.Routes != 2 {
		t.Fatalf("reload = %+v", r)
	}
	if h.addr() != addr {
		t.Errorf("route r moved from %s to %s", addr, h.addr())
	}
	if h.r.Addr("gone") != nil {
		t.Error("route gone still has an address")
	}
	if c, err := net.Dial("tcp", gone); err == nil {
		c.Close()
		t.Errorf("%s still accepts", gone)
	}
	roundTrip(t, dial(t, h.r.Addr("new").String()), "b", "b")
	roundTrip(t, dial(t, addr), "c", "c")
}

// TestReloadEmptyFileRefused: a file emptied while the tunnel runs (an
// editor that truncates, then writes, caught halfway) once stopped every
// listener; it is refused, the routes keep serving, and a file with routes
// again applies.
func TestReloadEmptyFileRefused(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "ok"))
	addr := h.addr()
	writeFile(t, h.path, "")
	le := h.waitRefused("1: error: No routes")
	if !strings.Contains(le.Error(), "applied, it would stop all 1 running routes") {
		t.Errorf("error %q", le)
	}
	roundTrip(t, dial(t, addr), "1", `"ok"1`)
	writeFile(t, h.path, stampConfig(target, "back"))
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload = %+v", r)
	}
	roundTrip(t, dial(t, addr), "2", `"back"2`)
}

// TestReloadDeletedThenEmptied: a file the configuration reads that is
// deleted, then created again empty, is a change the watcher reloads for
// (and reports): a missing file once fingerprinted as an empty one, so the
// empty file went unnoticed, with no error logged and no failed reload
// counted. The configuration file and a plugin's .wasm alike.
func TestReloadDeletedThenEmptied(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "s"))
	addr := h.addr()
	if err := os.Remove(h.path); err != nil {
		t.Fatal(err)
	}
	h.waitRefused("0: error: Cannot read configuration file")
	writeFile(t, h.path, "")
	h.waitRefused("1: error: No routes")
	writeFile(t, h.path, stampConfig(target, "s"))
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload = %+v", r)
	}
	wasm := filepath.Join(h.dir, "plugin.wasm")
	if err := os.Remove(wasm); err != nil {
		t.Fatal(err)
	}
	h.waitRefused("3: error: Cannot read plugin file")
	writeFile(t, wasm, "")
	h.waitRefused("3: error: Invalid plugin module")
	roundTrip(t, dial(t, addr), "x", `"s"x`)
}

// TestReloadOversizedFileSeenOnce: a file too large to load is refused once.
// The load fingerprinted it cut to MaxConfigFile bytes, the watcher as read
// (one byte more), so every later event in its directory (the tunnel's own
// log or access log next to the file) counted as a change: a reload, an
// error logged, another event, without end.
func TestReloadOversizedFileSeenOnce(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "s"))
	writeFile(t, h.path, stampConfig(target, "s")+"#"+strings.Repeat("x", MaxConfigFile)+"\n")
	h.waitRefused("1: error: Configuration file too large")
	if h.r.changed() {
		t.Fatal("the refused file, unchanged since, counts as changed")
	}
	roundTrip(t, dial(t, h.addr()), "x", `"s"x`)
}

// TestReloadIncludedFileChanged: a file the configuration reads with file()
// is watched like the plugins' files: editing it reloads (it once took a
// SIGHUP, the watcher ignoring it), and so does creating one that was
// missing.
func TestReloadIncludedFileChanged(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	config := strings.Replace(stampConfig(target, "unused"), `config = "unused"`, `config = trimspace(file("stamp.txt"))`, 1)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "stamp.txt"), "one\n")
	h := start(t, strings.ReplaceAll(config, `"stamp.txt"`, strconv.Quote(filepath.Join(dir, "stamp.txt"))))
	addr := h.addr()
	roundTrip(t, dial(t, addr), "x", `"one"x`)
	writeFile(t, filepath.Join(dir, "stamp.txt"), "two\n")
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload = %+v", r)
	}
	roundTrip(t, dial(t, addr), "y", `"two"y`)
	if err := os.Remove(filepath.Join(dir, "stamp.txt")); err != nil {
		t.Fatal(err)
	}
	h.waitRefused("10: error: Error in function call")
	writeFile(t, filepath.Join(dir, "stamp.txt"), "three\n")
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload = %+v", r)
	}
	roundTrip(t, dial(t, addr), "z", `"three"z`)
}

// TestReloadBrokenPluginFile: a .wasm replaced by something that is not a
// plugin is reported at the plugin's path and changes nothing.
func TestReloadBrokenPluginFile(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "s"))
	copyFile(t, "testdata/wasm/garbage.wasm", filepath.Join(h.dir, "plugin.wasm"))
	h.waitRefused("3: error: Invalid plugin module")
	roundTrip(t, dial(t, h.addr()), "x", `"s"x`)
}

// TestProxyProtocol: proxy_protocol = true makes the target receive a PROXY
// v1 header naming the client before the client's bytes.
func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := start(t, fmt.Sprintf("route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = %q\n  proxy_protocol = true\n}\n", ln.Addr()))
	c := dial(t, h.addr())
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	local := c.LocalAddr().(*net.TCPAddr)
	want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\nhi", local.Port, c.RemoteAddr().(*net.TCPAddr).Port)
	got := make([]byte, len(want))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != want {
		t.Fatalf("target got %q (%v), want %q", got, err, want)
	}
}

// TestProxyProtocolV2: proxy_protocol = "v2" sends the binary header; a
// value that is neither a bool nor "v1"/"v2" is an error naming both forms.
func TestProxyProtocolV2(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := start(t, fmt.Sprintf("route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = %q\n  proxy_protocol = \"v2\"\n}\n", ln.Addr()))
	c := dial(t, h.addr())
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	local := c.LocalAddr().(*net.TCPAddr)
	remote := c.RemoteAddr().(*net.TCPAddr)
	// Signature, v2 PROXY, TCP over IPv4, 12 address bytes, then the
	// client's bytes.
	want := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01")
	want = append(want, byte(local.Port>>8), byte(local.Port), byte(remote.Port>>8), byte(remote.Port))
	want = append(want, "hi"...)
	got := make([]byte, len(want))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("target got %x (%v), want %x", got, err, want)
	}

	_, diags := ParseSource([]byte("route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:1\"\n  proxy_protocol = \"v3\"\n}\n"), "bad.hcl", Options{})
	if !strings.Contains(diags.Error(), `proxy_protocol is true or "v1" (the text header), "v2" (binary, with the TLS server name, ALPN and version), or false; not "v3".`) {
		t.Errorf("proxy_protocol = \"v3\": %v", diags)
	}
}

// TestBeforeServe: Start calls BeforeServe once, after the first load
// built its plugins and before a listener is open (the CLI stops exiting at
// once on a stop signal then, so that no connection it accepted is cut);
// not for a file with errors, and not for reloads.
func TestBeforeServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := fmt.Sprintf("route \"r\" {\n  listen = %q\n  target = %q\n}\n", addr, echoServer(t))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	writeFile(t, path, "route \"r\" {\n  listen = \n}\n")
	calls := 0
	r := &Runner{Path: path, Logger: quiet, BeforeServe: func() { calls++ }}
	if err := r.Start(context.Background()); err == nil {
		r.Close()
		t.Fatal("a file with errors started")
	}
	if calls != 0 {
		t.Fatalf("BeforeServe called %d times for a file with errors", calls)
	}

	writeFile(t, path, conf)
	var dialErr error
	r = &Runner{Path: path, Logger: quiet, BeforeServe: func() {
		calls++
		var c net.Conn
		if c, dialErr = net.Dial("tcp", addr); dialErr == nil {
			c.Close()
		}
	}}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if calls != 1 || dialErr == nil {
		t.Fatalf("BeforeServe called %d times (want 1); dialling the route from it: %v (want refused)", calls, dialErr)
	}
	roundTrip(t, dial(t, addr), "x", "x")
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("BeforeServe called %d times after a reload, want 1", calls)
	}
}
