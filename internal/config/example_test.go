package config

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/testkit"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// precompileBuiltins puts the built-in plugins' compiled code in
// plugintest's cache, which the tests' Runtime uses, from a process without
// the race detector when the test has it (a Go guest compiles in ~3 s, ten
// times that under -race), once per built-in for the tests of the process:
// tests running in parallel that use the same built-in would each compile
// it, none finding it in the cache yet; the first compiles it, the others
// wait for it and then load it.
func precompileBuiltins(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		b, err := builtin.Wasm(name)
		if err != nil {
			t.Fatal(err)
		}
		once, _ := builtinsCompiled.LoadOrStore(name, new(sync.Once))
		once.(*sync.Once).Do(func() { compileBuiltin(name, b) })
	}
}

// builtinsCompiled holds a *sync.Once for each built-in precompileBuiltins
// was asked for.
var builtinsCompiled sync.Map

// compileBuiltin compiles wasm into plugintest's cache: from a process
// without the race detector under -race (plugintest.Precompile), by a
// Runtime of its own otherwise. Failures are ignored: the test's Runtime
// then compiles the module itself.
func compileBuiltin(name string, wasm []byte) {
	plugintest.Precompile(wasm)
	dir := plugintest.CacheDir()
	if dir == "" {
		return
	}
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return
	}
	defer rt.Close(ctx)
	if m, err := rt.Compile(ctx, name, wasm); err == nil {
		m.Close(ctx)
	}
}

// TestRootTunnelHCL runs the repository's tunnel.hcl, with its listen
// addresses moved to free ports and its targets to local servers, and
// checks what each route promises; its deny is the built-in one, as for a
// user.
func TestRootTunnelHCL(t *testing.T) {
	t.Parallel()
	const path = "../../tunnel.hcl"
	f, diags := Parse(path, Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if len(diags) > 0 {
		t.Fatalf("tunnel.hcl:\n%s", FormatDiagnostics(diags, f.Files))
	}
	for _, p := range f.Plugins {
		if p.Builtin != "" {
			precompileBuiltins(t, p.Builtin)
		}
	}
	// What the file says, before the test moves it to free ports.
	if p := f.Plugin("resp"); p == nil || p.Builtin != "resp" || p.Path != "" {
		t.Errorf("plugin resp: %+v; want the built-in resp", p)
	}
	if r := f.Route("redis"); r == nil || r.Listen != "127.0.0.1:7379" || r.Target != "127.0.0.1:6379" || len(r.Chain) != 1 {
		t.Errorf("route redis = %+v", r)
	}

	redis := echoServer(t) // stands in for Redis: what reaches it comes back
	echo := echoServer(t)
	stdout := &testkit.Buffer{}
	r := &Runner{
		Path:    path,
		Options: Options{LookupEnv: func(string) (string, bool) { return "", false }},
		Stdout:  stdout,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Runtime: plugin.RuntimeOptions{CacheDir: plugintest.CacheDir()},
		Edit: func(f *File) {
			for _, rt := range f.Routes {
				rt.Listen = "127.0.0.1:0"
			}
			f.Route("redis").Target = redis
			f.Route("echo").Target = echo
		},
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// redis: ordinary commands pass; FLUSHALL (any case) is answered by the
	// tunnel and the connection kept. (plugins/resp runs this file against a
	// real redis-server with redis-cli and redis-benchmark.)
	c, err := net.Dial("tcp", r.Addr("redis").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "*1\r\n$4\r\nPING\r\n", "*1\r\n$4\r\nPING\r\n")
	roundTrip(t, c, "*1\r\n$8\r\nflushall\r\n", "-ERR command 'flushall' is not allowed by the tunnel\r\n")
	roundTrip(t, c, "*1\r\n$4\r\nPING\r\n", "*1\r\n$4\r\nPING\r\n")

	// echo: bytes pass unchanged and are printed as text on stdout.
	e, err := net.Dial("tcp", r.Addr("echo").String())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	roundTrip(t, e, "hello\n", "hello\n")
	// The dump prints a chunk before passing it on, so both are on stdout
	// by the time the echo is back.
	if out := stdout.String(); !strings.Contains(out, "client -> server 6 bytes\nhello\\n\n") || !strings.Contains(out, "server -> client 6 bytes\nhello\\n") {
		t.Errorf("dump on stdout:\n%s", out)
	}
}

// TestDenyREADMEExample runs the configuration of plugins/deny/README.md
// (the built-in deny) against a stand-in Redis: the client's FLUSHALL is dropped and answered
// by the tunnel, and a server reply holding "FLUSHALL" reaches the client
// untouched.
func TestDenyREADMEExample(t *testing.T) {
	t.Parallel()
	precompileBuiltins(t, "deny")
	readme, err := os.ReadFile("../../plugins/deny/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```hcl\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("no hcl block in plugins/deny/README.md")
	}
	redis, received := fakeRedis(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	writeFile(t, path, block)
	r := &Runner{
		Path:    path,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Runtime: plugin.RuntimeOptions{CacheDir: plugintest.CacheDir()},
		Edit: func(f *File) {
			f.Route("redis").Listen = "127.0.0.1:0"
			f.Route("redis").Target = redis
		},
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := dial(t, r.Addr("redis").String())
	roundTrip(t, c, "GET k\r\n", "$8\r\nFLUSHALL\r\n")
	roundTrip(t, c, "PING\r\n", "+PONG\r\n")
	// In lower case: the reply, then the close (action = "close"), and
	// the server never sees the command.
	roundTrip(t, c, "flushall\r\n", "-ERR command not allowed\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the reply: read %d bytes, %v; want the connection closed", n, err)
	}
	if got := strings.Join(received(), ""); got != "GET k\r\nPING\r\n" {
		t.Errorf("the server received %q", got)
	}
}

// fakeRedis serves a line protocol: GET answers the bulk string
// "FLUSHALL", PING answers +PONG, anything else +OK. received returns the
// lines it got so far.
func fakeRedis(t *testing.T) (addr string, received func() []string) {
	t.Helper()
	var (
		mu    sync.Mutex
		lines []string
	)
	addr = serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
			reply := "+OK\r\n"
			switch {
			case strings.HasPrefix(line, "GET "):
				reply = "$8\r\nFLUSHALL\r\n"
			case line == "PING\r\n":
				reply = "+PONG\r\n"
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				return
			}
		}
	})
	return addr, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
}
