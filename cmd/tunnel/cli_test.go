package main

// Tests of the tunnel binary as a user runs it: built once in TestMain, run
// as a child process on loopback, judged by its exit status, its stdout (the
// traffic dump) and its stderr (the log and the error lines).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	_ "unsafe" // go:linkname wazeroVersion

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// tunnelBin is the binary under test, set up by TestMain.
var tunnelBin string

// cliName is the name the binary under test is started by: a test binary
// started under it is the CLI (see TestMain).
const cliName = "tunnel"

// wazeroVersion is the variable wazero names its compilation cache
// directory by, and testWazeroVersion what it holds in the test binaries
// of the other packages (version.Default: a test binary of a library has
// no module versions in its build info). This package's test binary, a
// main package that imports wazero, would say go.mod's version; TestMain
// sets it to testWazeroVersion, so that the tunnels under test and the
// test processes share one cache (TestCacheSharedWithTestProcesses).
//
//go:linkname wazeroVersion github.com/tetratelabs/wazero/internal/version.version
var wazeroVersion string

const testWazeroVersion = "dev"

// binaryEnv names the binary under test for a test process that the tests
// start themselves, which then does not set it up again.
const binaryEnv = "TUNNEL_TEST_BINARY"

func TestMain(m *testing.M) {
	// In the binary under test and in this process's own plugin runtimes
	// (tunnel validate run in-process) alike.
	wazeroVersion = testWazeroVersion
	if filepath.Base(os.Args[0]) == cliName {
		// Started by a test as the binary under test: be the CLI (main
		// exits with the CLI's status; never run the tests in its place).
		main()
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "tunnel-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tunnelBin = filepath.Join(dir, cliName)
	// The binary under test is this test binary itself, started under the
	// name cliName (a symbolic link): it holds the CLI's main and all of
	// its code, and building a second binary would cost a cold run about
	// 3 s of compiling and linking before the first test. Never with
	// -race, even when the tests are: in a race-built binary wazero's
	// compiler takes ~20 s for one Go guest (2.4 s without), past the
	// tests' waits, so a race-built test binary builds the CLI without
	// it. The code it would check (the engine, the plugin runtime, the
	// config runner) is tested in-process with -race by its own packages;
	// so are this package's signal and shutdown paths
	// (TestShutdownBounded, TestShutdownSecondSignal).
	//
	// Plugins compiled by the tunnels under test are cached in the run's
	// plugintest directory (unless TUNNEL_CACHE_DIR names a directory to
	// keep), the one the test processes of every package compile their Go
	// guests into: deny, replace, resp and noop, compiled here by the
	// tunnels (about 1 CPU-s each), are then loaded, not compiled again, by
	// the plugins' own tests.
	if os.Getenv("TUNNEL_CACHE_DIR") == "" {
		if d := plugintest.CacheDir(); d != "" {
			os.Setenv("TUNNEL_CACHE_DIR", d)
		} else {
			os.Setenv("TUNNEL_CACHE_DIR", filepath.Join(dir, "cache"))
		}
	}
	if err := setUpBinary(); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the tunnel binary:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The parallel tests mostly wait on their tunnels and sockets (the
	// package needs about 16 s of CPU for 35 s of tests run one after the
	// other): eight at a time rather than one per core, unless -parallel
	// says otherwise (four: 15.5 s for the package, eight: 12.0 s, on a
	// shared machine). Their bounds are on what each tunnel does, never on
	// how fast the machine is.
	testkit.DefaultParallel(8)
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// The tests' own servers and process waiters must all have ended.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// setUpBinary makes tunnelBin the binary under test (see TestMain).
func setUpBinary() error {
	if bin := os.Getenv(binaryEnv); bin != "" {
		// A test re-run in a child process (TestZeroDowntimeSwap in its
		// network namespace) uses the binary its parent set up.
		tunnelBin = bin
		return nil
	}
	if !testkit.Race {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		if testing.CoverMode() != "" && os.Getenv("GOCOVERDIR") == "" {
			// A coverage-built test binary run by hand (go test sets
			// GOCOVERDIR): without it, each tunnel would warn on stderr
			// at exit that it emits no coverage data.
			cover := filepath.Join(filepath.Dir(tunnelBin), "cover")
			if err := os.Mkdir(cover, 0o755); err != nil {
				return err
			}
			os.Setenv("GOCOVERDIR", cover)
		}
		return os.Symlink(self, tunnelBin)
	}
	build := exec.Command("go", "build", "-ldflags=-X github.com/tetratelabs/wazero/internal/version.version="+testWazeroVersion, "-o", tunnelBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// cliTimeout bounds every wait on the child process.
const cliTimeout = 20 * time.Second

// output is a concurrency-safe buffer for a child's stdout or stderr.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
	discard bool  // keep nothing, only count
	n       int64 // bytes written
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

// newDiscard is an output that keeps nothing, for a traffic dump of more
// bytes than are worth keeping.
func newDiscard() *output { return &output{changed: make(chan struct{}), discard: true} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n += int64(len(p))
	if !o.discard {
		o.buf.Write(p)
	}
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// wait blocks until the output matches re and returns the submatches.
func (o *output) wait(t *testing.T, re string) []string {
	t.Helper()
	return o.waitWithin(t, cliTimeout, re)
}

// waitWithin is wait with its own bound.
func (o *output) waitWithin(t *testing.T, d time.Duration, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	o.waitUntil(t, d, fmt.Sprintf("matched %q", re), func(text string) bool {
		m = rx.FindStringSubmatch(text)
		return m != nil
	})
	return m
}

// waitUntil blocks until ok holds for the whole output, for at most d;
// then the test fails, saying the output never what.
func (o *output) waitUntil(t *testing.T, d time.Duration, what string, ok func(string) bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		o.mu.Lock()
		ch, text := o.changed, o.buf.String()
		o.mu.Unlock()
		if ok(text) {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("output never %s in %v; it is:\n%s", what, d, text)
		}
	}
}

// proc is a running tunnel.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *output
	exited         chan struct{}
	err            error // of Wait, once exited is closed
}

// start runs the tunnel with args; cleanup kills it if it is still running.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startWith(t, newOutput(), args...)
}

// startWith is start with the child's stdout going to stdout.
func startWith(t *testing.T, stdout *output, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(tunnelBin, args...), stdout: stdout, stderr: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.start(t)
	return p
}

// start starts p.cmd, whose outputs are set, and kills it when the test
// ends if it is still running.
func (p *proc) start(t *testing.T) {
	t.Helper()
	// The race runtime otherwise sleeps a second before a clean exit.
	// (Added to the environment the test set, if it set one.)
	if p.cmd.Env == nil {
		p.cmd.Env = os.Environ()
	}
	p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// startPlain runs the plain mode from 127.0.0.1:0 to target and returns
// the address it listens on, read from its log.
func startPlain(t *testing.T, target string, args ...string) (*proc, string) {
	t.Helper()
	return startPlainWith(t, newOutput(), target, args...)
}

// startPlainWith is startPlain with the child's stdout going to stdout.
func startPlainWith(t *testing.T, stdout *output, target string, args ...string) (*proc, string) {
	t.Helper()
	p := startWith(t, stdout, append([]string{"--from", "127.0.0.1:0", "--to", target}, args...)...)
	m := p.stderr.wait(t, `msg=listening .*addr=(127\.0\.0\.1:\d+)`)
	return p, m[1]
}

// exitCode waits for the process to end and returns its exit status.
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(cliTimeout):
		t.Fatalf("tunnel still running after %v; stderr:\n%s", cliTimeout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// exitedWithin reports whether the process has ended, waiting up to d.
func (p *proc) exitedWithin(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// runTunnel runs the tunnel to completion and returns exit status, stdout, stderr.
func runTunnel(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	p := start(t, args...)
	code := p.exitCode(t)
	return code, p.stdout.String(), p.stderr.String()
}

// echoServer echoes on 127.0.0.1:0 until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	return server(t, func(c net.Conn) { echo(c) })
}

// echo copies what c receives back to it, half-closes it after the end of
// the input, and closes it.
func echo(c net.Conn) error {
	defer c.Close()
	_, err := io.Copy(c, c)
	if err == nil {
		c.(*net.TCPConn).CloseWrite()
	}
	return err
}

// stallServer listens on 127.0.0.1:0 and accepts connections it never
// reads from nor writes to, like a server that stopped reading; each is
// sent on the returned channel (which holds 16 before accepting blocks).
func stallServer(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 16)
	return server(t, func(c net.Conn) { accepted <- c }), accepted
}

// server runs handle in its own goroutine on every connection accepted on
// 127.0.0.1:0 until the test ends, and returns the address. A connection
// stays open after handle returns; at the end of the test the listener and
// every connection are closed and the handlers awaited.
func server(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, cliTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(cliTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// converse sends msg, reads the echo, half-closes and reads to EOF.
func converse(t *testing.T, c *net.TCPConn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the half-close: %q, %v", rest, err)
	}
}

// TestPlainHexDump: the plain mode forwards and prints every chunk on
// stdout as a header and hexdump lines, the ends of both streams, and
// nothing else; the log goes to stderr. SIGINT stops it with status 0.
func TestPlainHexDump(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t))
	converse(t, dial(t, addr), "hello\n")
	p.stdout.wait(t, `#1 server -> client end\n`)
	want := "#1 client -> server 6 bytes\n" +
		"00000000  68 65 6c 6c 6f 0a                                 |hello.|\n" +
		"#1 server -> client 6 bytes\n" +
		"00000000  68 65 6c 6c 6f 0a                                 |hello.|\n" +
		"#1 client -> server end\n" +
		"#1 server -> client end\n"
	if got := p.stdout.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	p.stderr.wait(t, `msg="connection closed" conn=1 .*bytes_from_client=6 bytes_to_server=6 bytes_from_server=6 bytes_to_client=6`)

	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit status %d after SIGINT, want 0; stderr:\n%s", code, p.stderr)
	}
	if strings.Contains(p.stdout.String(), "level=") {
		t.Errorf("log lines on stdout:\n%s", p.stdout)
	}
	if !strings.Contains(p.stderr.String(), "shutting down") {
		t.Errorf("stderr does not say it is shutting down:\n%s", p.stderr)
	}
}

// TestPlainTextDump: --dump text prints the bytes as text.
func TestPlainTextDump(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "text")
	converse(t, dial(t, addr), "tab\there\n")
	p.stdout.wait(t, `#1 server -> client end\n`)
	want := "#1 client -> server 9 bytes\ntab\\there\\n\n" +
		"#1 server -> client 9 bytes\ntab\\there\\n\n" +
		"#1 client -> server end\n#1 server -> client end\n"
	if got := p.stdout.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
}

// TestPlainNoDump: --dump none forwards and prints nothing on stdout.
func TestPlainNoDump(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "none")
	payload := strings.Repeat("0123456789", 100_000)
	converse(t, dial(t, addr), payload)
	p.stderr.wait(t, `msg="connection closed" conn=1 .*bytes_from_client=1000000 bytes_to_server=1000000 bytes_from_server=1000000 bytes_to_client=1000000`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if out := p.stdout.String(); out != "" {
		t.Errorf("stdout with --dump none: %q", out)
	}
}

// TestBadFlags: usage errors exit 2 with the reason and the usage.
func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--from", "127.0.0.1:0"}, "tunnel: plain mode needs both --from and --to"},
		{[]string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "extra"}, `tunnel: unexpected argument "extra"`},
		{[]string{"--dial-timeout", "soon"}, `invalid value "soon" for flag -dial-timeout: not a duration (e.g. 5s, 500ms, 1m30s)`},
		{[]string{"--dial-timeout", "5"}, `invalid value "5" for flag -dial-timeout: a duration needs a unit, e.g. 5s or 5ms`},
		{[]string{"--dial-timeout", "-5s"}, `invalid value "-5s" for flag -dial-timeout: must not be negative`},
		{[]string{"--dial-timeout", "0"}, `invalid value "0" for flag -dial-timeout: must be from 1ms to 10m0s`},
		{[]string{"--idle-timeout", "-1s"}, `invalid value "-1s" for flag -idle-timeout: must not be negative`},
		{[]string{"--grace", "2h"}, `invalid value "2h" for flag -grace: must be from 0s to 1h0m0s`},
		{[]string{"--max-conns", "-5"}, `invalid value "-5" for flag -max-conns: must not be negative`},
		{[]string{"--capture-max-files", "two"}, `invalid value "two" for flag -capture-max-files: not a whole number`},
		{[]string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--capture-max-files", "3"}, "tunnel: --capture-max-size and --capture-max-files go with --capture FILE"},
		{[]string{"--plugin", "builtin:noop", "--plugin-config", "{}", "--plugin-config", `{"x":1}`}, `invalid value "{\"x\":1}" for flag -plugin-config: --plugin builtin:noop has a --plugin-config already: give one per --plugin`},
	} {
		code, stdout, stderr := runTunnel(t, tc.args...)
		if code != 2 {
			t.Errorf("%q: exit status %d, want 2", tc.args, code)
		}
		// The reason first, then the usage (the reason goes through the
		// log's buffered stderr once that is set up: so must the usage).
		if i := strings.Index(stderr, tc.want); i < 0 || !strings.Contains(stderr[i:], "Usage:") {
			t.Errorf("%q: stderr does not contain %q followed by the usage:\n%s", tc.args, tc.want, stderr)
		}
		if stdout != "" {
			t.Errorf("%q: stdout: %q", tc.args, stdout)
		}
	}
}

// TestCacheSharedWithTestProcesses: the binary under test keeps compiled
// plugins in the directory wazero names by its version in the test
// processes of the other packages ("dev": a test binary of a library, or
// of a main package that does not itself import wazero, has no module
// versions in its build info), so that what they compiled it loads, and
// the reverse: what TestMain's wazeroVersion is for. If wazero renames
// the variable, the link name (or -X, for a race-built test binary) sets
// nothing, the tunnel names the directory by go.mod's version, and this
// fails.
func TestCacheSharedWithTestProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	conf := filepath.Join(dir, "tunnel.hcl")
	noop, err := filepath.Abs("../../host/plugin/testdata/noop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(conf, []byte(fmt.Sprintf(`plugin "noop" {
  path = %q
}
route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain { plugin = plugin.noop }
}
`, noop)), 0o644)
	cmd := exec.Command(tunnelBin, "validate", conf)
	cmd.Env = append(os.Environ(), "TUNNEL_CACHE_DIR="+cache)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "valid (1 route(s), 1 plugin(s)") {
		t.Fatalf("tunnel validate: %v\n%s", err, out)
	}
	files := cacheFiles(t, cache)
	want := "wazero-" + testWazeroVersion + "-" + runtime.GOARCH + "-" + runtime.GOOS + "/"
	if len(files) != 1 || !strings.HasPrefix(files[0], want) {
		t.Errorf("the tunnel's compilation cache holds %q, want one file under %s", files, want)
	}
}

// cacheFiles lists the files under dir, relative to it, but the lock
// files the runtime keeps beside wazero's cache so that processes sharing
// it compile a module once (host/internal/wasm/compilelock.go).
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "tunnel-compile-locks" {
			return filepath.SkipDir
		}
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestMissingPluginFileHint: a --plugin file that does not exist gets the
// way to build it when Go sources lie next to it, else the built-ins.
func TestMissingPluginFileHint(t *testing.T) {
	t.Parallel()
	nothere := filepath.Join(t.TempDir(), "nothere.wasm") // no Go sources next to it
	for _, tc := range []struct{ path, want string }{
		{nothere, "tunnel: --plugin " + nothere + ": plugin: open " + nothere + ": no such file or directory. For a built-in plugin give --plugin builtin:NAME (tunnel plugins lists them).\n"},
		{"../../plugins/deny/deny.wasm", "tunnel: --plugin ../../plugins/deny/deny.wasm: plugin: open ../../plugins/deny/deny.wasm: no such file or directory. Build it from the Go sources next to it: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ../../plugins/deny/deny.wasm ../../plugins/deny\n"},
	} {
		code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--plugin", tc.path)
		if code != 1 || stderr != tc.want {
			t.Errorf("--plugin %s: exit %d, stderr:\n%s\nwant:\n%s", tc.path, code, stderr, tc.want)
		}
	}
}

// TestHelp: --help prints the usage and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := runTunnel(t, "--help")
	if code != 0 || !strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, "--from ADDR --to ADDR") {
		t.Errorf("exit status %d, stderr:\n%s", code, stderr)
	}
}

// TestMalformedAddress: a bad address is reported in one line that names
// the flag and the address, without the usage.
func TestMalformedAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "127.0.0.1", "--to", "127.0.0.1:8080"}, `tunnel: --from: address "127.0.0.1" is not host:port: `},
		{[]string{"--from", "127.0.0.1:9090", "--to", "localhost:99999"}, `tunnel: --to: address "localhost:99999": port "99999" is not a number from 0 to 65535`},
		{[]string{"--from", "127.0.0.1:9090", "--to", "127.0.0.1:0"}, `tunnel: --to 127.0.0.1:0 has port 0; name the port the server listens on`},
		// A loop: every connection dialled another, 9,994 in 2 s, until
		// accept failed with "too many open files".
		{[]string{"--from", "127.0.0.1:9090", "--to", "127.0.0.1:9090"}, `tunnel: --to 127.0.0.1:9090 is where --from 127.0.0.1:9090 listens: every connection would dial the tunnel itself`},
		{[]string{"--from", ":9090", "--to", "localhost:9090"}, `tunnel: --to localhost:9090 is where --from :9090 listens`},
		// No host: Go dials 0.0.0.0, which Linux connects to 127.0.0.1.
		{[]string{"--from", "127.0.0.1:9090", "--to", ":9090"}, `tunnel: --to :9090 is where --from 127.0.0.1:9090 listens`},
	} {
		code, _, stderr := runTunnel(t, tc.args...)
		if code != 2 {
			t.Errorf("%q: exit status %d, want 2", tc.args, code)
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
			t.Errorf("%q: stderr:\n%s\nwant one line starting %q", tc.args, stderr, tc.want)
		}
	}
}

// TestPortInUse: a listen address that is taken ends the tunnel with
// status 1 and a line naming the address and the cause, with a capture
// file open too (whose SIGHUP watcher once kept the process waiting).
func TestPortInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, extra := range [][]string{nil, {"--capture", filepath.Join(t.TempDir(), "c.pcapng")}} {
		code, _, stderr := runTunnel(t, append([]string{"--from", busy.Addr().String(), "--to", "127.0.0.1:1"}, extra...)...)
		if code != 1 {
			t.Errorf("%q: exit status %d, want 1", extra, code)
		}
		want := fmt.Sprintf("tunnel: route %q: cannot listen on %s: ", "default", busy.Addr())
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, want) || !strings.HasSuffix(last, "address already in use") {
			t.Errorf("%q: last line of stderr %q, want %q...address already in use; stderr:\n%s", extra, last, want, stderr)
		}
	}
}

// TestPprofPortInUse: --pprof on an address in use ends the tunnel at
// start with status 1, as --admin does (it once logged an error and ran on
// without the profiler).
func TestPprofPortInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--pprof", busy.Addr().String())
	if want := "tunnel: --pprof: listen tcp " + busy.Addr().String() + ": bind: address already in use"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit status %d, want 1 and %q; stderr:\n%s", code, want, stderr)
	}
}

// TestSignalGrace: on SIGTERM the tunnel stops accepting at once, lets the
// open connection finish, and exits 0 as soon as it has.
func TestSignalGrace(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--grace", "1m")
	c := dial(t, addr)
	io.WriteString(c, "before\n")
	if _, err := io.ReadFull(c, make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.stderr.wait(t, `msg="shutting down"`)
	// The listener closes right after that line; soon dials are refused.
	deadline := time.Now().Add(cliTimeout)
	for {
		c2, err := net.DialTimeout("tcp", addr, cliTimeout)
		if err != nil {
			break
		}
		c2.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after SIGTERM")
		}
	}
	// The open connection still works, and its end ends the process.
	converse(t, c, "during the grace period\n")
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
	}
}

// TestSignalGraceExpires: a connection still open when the grace period
// ends is closed, and the tunnel exits 0.
func TestSignalGraceExpires(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--grace", "300ms")
	c := dial(t, addr)
	io.WriteString(c, "idle\n")
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("exited %v after the signal, before the 300ms grace period", d)
	}
	if rest, err := io.ReadAll(c); len(rest) != 0 || (err != nil && !isReset(err)) {
		t.Errorf("open connection after the grace period: %q, %v; want it closed", rest, err)
	}
	if !strings.Contains(p.stderr.String(), "grace period over") {
		t.Errorf("stderr does not say the grace period ended:\n%s", p.stderr)
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// TestTargetDownLogged: with the target down, each client is closed and
// the log names the target and the error; the tunnel keeps running.
func TestTargetDownLogged(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p, addr := startPlain(t, target)
	for i := 1; i <= 2; i++ {
		if c, err := net.DialTimeout("tcp", addr, cliTimeout); err == nil {
			c.SetDeadline(time.Now().Add(cliTimeout))
			if rest, err := io.ReadAll(c); len(rest) != 0 || (err != nil && !isReset(err)) {
				t.Errorf("client %d: %q, %v; want it closed", i, rest, err)
			}
			c.Close()
		} else if !isReset(err) {
			t.Fatalf("dial: %v", err)
		}
		p.stderr.wait(t, fmt.Sprintf(`level=WARN msg="connection closed" conn=%d .*err="dial %s: .*connection refused"`, i, regexp.QuoteMeta(target)))
	}
	select {
	case <-p.exited:
		t.Fatalf("tunnel exited; stderr:\n%s", p.stderr)
	default:
	}
}

// TestDumpReconstructsStreams: the hex dump of several concurrent
// connections holds every byte of both directions, chunks never
// interleave, and each stream read back from the dump equals what was sent.
func TestDumpReconstructsStreams(t *testing.T) {
	t.Parallel()
	const conns, size = 4, 100_000
	p, addr := startPlain(t, echoServer(t))
	want := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(j*7 + i*131 + j>>9)
		}
		want[fmt.Sprintf("%x", sha(payload))] = true
		c := dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { c.Write(payload); c.CloseWrite() }()
			back, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(back, payload) {
				errs <- fmt.Errorf("echo through the tunnel: %d bytes, %v", len(back), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 1; i <= conns; i++ {
		p.stderr.wait(t, fmt.Sprintf(`msg="connection closed" conn=%d `, i))
	}
	// Once the process has exited, its whole stdout has been collected.
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	streams, err := parseHexDump(p.stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2*conns {
		t.Fatalf("dump has %d streams, want %d", len(streams), 2*conns)
	}
	for key, b := range streams {
		if !want[fmt.Sprintf("%x", sha(b))] {
			t.Errorf("stream %s in the dump (%d bytes) is none of the payloads", key, len(b))
		}
	}
}

var (
	headerLine = regexp.MustCompile(`^#(\d+) (client -> server|server -> client) (\d+) bytes?$`)
	endLine    = regexp.MustCompile(`^#(\d+) (client -> server|server -> client) end$`)
)

// parseHexDump reads a --dump hex output back into its streams, keyed
// "#conn direction", checking the layout on the way.
func parseHexDump(out string) (map[string][]byte, error) {
	streams := map[string][]byte{}
	ended := map[string]bool{}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if m := endLine.FindStringSubmatch(lines[i]); m != nil {
			ended["#"+m[1]+" "+m[2]] = true
			continue
		}
		m := headerLine.FindStringSubmatch(lines[i])
		if m == nil {
			return nil, fmt.Errorf("line %d: %q is not a chunk header", i+1, lines[i])
		}
		key := "#" + m[1] + " " + m[2]
		if ended[key] {
			return nil, fmt.Errorf("line %d: chunk after the end of %s", i+1, key)
		}
		n, _ := strconv.Atoi(m[3])
		for off := 0; off < n; off += 16 {
			i++
			if i >= len(lines) {
				return nil, fmt.Errorf("%s: dump ends inside a chunk", key)
			}
			// 00000010  48 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |Hello world.|
			line := lines[i]
			bar := strings.IndexByte(line, '|')
			if len(line) < 10 || bar < 0 || line[len(line)-1] != '|' {
				return nil, fmt.Errorf("line %d: %q is not a hexdump line", i+1, line)
			}
			if line[:8] != fmt.Sprintf("%08x", off) {
				return nil, fmt.Errorf("line %d: offset %s, want %08x", i+1, line[:8], off)
			}
			b, err := hex.DecodeString(strings.Join(strings.Fields(line[8:bar]), ""))
			if err != nil || len(b) != min(16, n-off) {
				return nil, fmt.Errorf("line %d: %q: %d bytes, %v", i+1, line, len(b), err)
			}
			streams[key] = append(streams[key], b...)
		}
	}
	for key := range streams {
		if !ended[key] {
			return nil, fmt.Errorf("%s has no end line", key)
		}
	}
	return streams, nil
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// TestRouteFlags: --dial-timeout, --idle-timeout and --max-conns reach the
// route.
func TestRouteFlags(t *testing.T) {
	t.Parallel()
	t.Run("dial-timeout", func(t *testing.T) {
		t.Parallel()
		target := testkit.BlackHole(t)
		p, addr := startPlain(t, target, "--dial-timeout", "300ms")
		start := time.Now()
		if c, err := net.DialTimeout("tcp", addr, cliTimeout); err == nil {
			c.SetDeadline(time.Now().Add(cliTimeout))
			io.ReadAll(c)
			c.Close()
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("client closed after %v with --dial-timeout 300ms", d)
		}
		p.stderr.wait(t, `msg="connection closed" .*err="dial `+regexp.QuoteMeta(target)+`: .*i/o timeout"`)
	})
	t.Run("idle-timeout", func(t *testing.T) {
		t.Parallel()
		p, addr := startPlain(t, echoServer(t), "--dump", "none", "--idle-timeout", "300ms")
		c := dial(t, addr)
		io.WriteString(c, "x")
		io.ReadFull(c, make([]byte, 1))
		if rest, err := io.ReadAll(c); len(rest) != 0 || (err != nil && !isReset(err)) {
			t.Errorf("idle client: %q, %v; want it closed", rest, err)
		}
		p.stderr.wait(t, `msg="connection closed" .*err="idle for 300ms"`)
	})
	t.Run("max-conns", func(t *testing.T) {
		t.Parallel()
		_, addr := startPlain(t, echoServer(t), "--dump", "none", "--max-conns", "1")
		first := dial(t, addr)
		io.WriteString(first, "1")
		io.ReadFull(first, make([]byte, 1))
		second := dial(t, addr)
		io.WriteString(second, "2")
		second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _ := second.Read(make([]byte, 1)); n != 0 {
			t.Fatal("second client served while the first is open with --max-conns 1")
		}
		first.Close()
		second.SetReadDeadline(time.Now().Add(cliTimeout))
		got := make([]byte, 1)
		if _, err := io.ReadFull(second, got); err != nil || string(got) != "2" {
			t.Errorf("second client after the first closed: %q, %v", got, err)
		}
	})
}
