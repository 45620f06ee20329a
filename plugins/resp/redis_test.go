package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	hostplugin "github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	tconfig "github.com/tunnelwasm/tunnel/internal/config"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// toolTimeout bounds every run of a Redis tool.
const toolTimeout = 60 * time.Second

// lookTool finds a Redis binary, or skips the test when it is not
// installed (fails under CI, where .ci/run installs redis-server).
func lookTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing under CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return bin
}

// redisServer starts redis-server on a free loopback port.
func redisServer(t *testing.T, extra ...string) string {
	t.Helper()
	bin := lookTool(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	cmd.Args = append(cmd.Args, extra...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(toolTimeout)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port: no event to wait on
	}
}

// tool runs a Redis tool against addr with stdin, and returns its stdout;
// it fails the test unless the tool exits with status 0.
func tool(t *testing.T, name, addr, stdin string, args ...string) string {
	t.Helper()
	stdout, _ := toolExit(t, 0, name, addr, stdin, args...)
	return stdout
}

// toolExit is tool for an expected exit status; it returns stdout and
// stderr.
func toolExit(t *testing.T, code int, name, addr, stdin string, args ...string) (string, string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lookTool(t, name), append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if got := cmd.ProcessState.ExitCode(); got != code || err != nil && code == 0 {
		t.Fatalf("%s %q: exit status %d, want %d (%v)\nstdout:\n%s\nstderr:\n%s", name, args, got, code, err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// precompileBuiltins compiles the built-in modules a Runner will load
// outside the race detector (about 10 times faster) into the cache it
// reads (plugintest.Precompile; nothing without -race).
func precompileBuiltins(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		wasm, err := builtin.Wasm(name)
		if err != nil {
			t.Fatal(err)
		}
		plugintest.Precompile(wasm)
	}
}

// rootTunnel runs the repository's tunnel.hcl with its Redis route in
// front of redis, on a free port, with the built-in resp as a user gets it.
func rootTunnel(t *testing.T, redis string) string {
	t.Helper()
	precompileBuiltins(t, "resp") // tunnel.hcl's one plugin
	r := &tconfig.Runner{
		Path:    "../../tunnel.hcl",
		Options: tconfig.Options{LookupEnv: func(string) (string, bool) { return "", false }},
		Stdout:  io.Discard,
		Logger:  slog.New(slog.DiscardHandler),
		Runtime: hostplugin.RuntimeOptions{CacheDir: plugintest.CacheDir()},
		Edit: func(f *tconfig.File) {
			for _, rt := range f.Routes {
				rt.Listen = "127.0.0.1:0"
			}
			f.Route("redis").Target = redis
		},
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r.Addr("redis").String()
}

// TestRedisClients runs the repository's tunnel.hcl (its Redis route is
// this plugin, built in) in front of a real redis-server and talks to it
// with redis-cli and redis-benchmark: ordinary commands work, single,
// piped and pipelined; FLUSHALL, FLUSHDB and CONFIG SET get the error
// reply in their place, the connection goes on, and the server never
// sees them.
func TestRedisClients(t *testing.T) {
	redis := redisServer(t)
	addr := rootTunnel(t, redis)
	const refused = "ERR command '%s' is not allowed by the tunnel\n\n" // redis-cli adds an empty line after an error

	if got := tool(t, "redis-cli", addr, "", "SET", "greeting", "hello"); got != "OK\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := tool(t, "redis-cli", addr, "", "FLUSHALL"); got != fmt.Sprintf(refused, "flushall") {
		t.Fatalf("FLUSHALL: %q", got)
	}
	// One connection, commands one after the other: each answer in its place.
	got := tool(t, "redis-cli", addr, "SET a 2\nCONFIG SET maxmemory 1\nCONFIG GET maxmemory\nflushdb\nGET a\nGET greeting\n")
	want := "OK\n" + fmt.Sprintf(refused, "config set") + "maxmemory\n0\n" + fmt.Sprintf(refused, "flushdb") + "2\nhello\n"
	if got != want {
		t.Fatalf("redis-cli, piped commands:\n%s\nwant:\n%s", got, want)
	}
	// Pipelined: redis-cli --pipe writes everything, then reads the replies.
	var pipe strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&pipe, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\nv%d\r\n", len(strconv.Itoa(i))+1, i, len(strconv.Itoa(i))+1, i)
		if i%100 == 50 {
			pipe.WriteString("*1\r\n$8\r\nFLUSHALL\r\n")
		}
	}
	got, stderr := toolExit(t, 1, "redis-cli", addr, pipe.String(), "--pipe") // 1: there were errors
	if !strings.Contains(got, "errors: 10, replies: 1010") || stderr != strings.Repeat(fmt.Sprintf(refused[:len(refused)-1], "flushall"), 10) {
		t.Fatalf("redis-cli --pipe: %q, stderr %q; want 10 errors in 1010 replies", got, stderr)
	}
	// redis-benchmark: many clients, pipelined, every request answered.
	got = tool(t, "redis-benchmark", addr, "", "-t", "set,get", "-n", "4000", "-c", "20", "-P", "8", "-r", "1000", "--csv")
	for _, test := range []string{`"SET"`, `"GET"`} {
		line := ""
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(l, test+",") {
				line = l
			}
		}
		f := strings.Split(line, ",")
		if len(f) < 2 {
			t.Fatalf("redis-benchmark: no %s line in:\n%s", test, got)
		}
		if rps, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64); err != nil || rps <= 0 {
			t.Errorf("redis-benchmark %s: %q requests per second", test, f[1])
		}
	}
	// The server never saw a refused command, and kept the data.
	if got := tool(t, "redis-cli", redis, "", "GET", "greeting"); got != "hello\n" {
		t.Errorf("GET greeting from the server: %q", got)
	}
	stats := tool(t, "redis-cli", redis, "", "INFO", "commandstats")
	for _, cmd := range []string{"cmdstat_flushall", "cmdstat_flushdb", "cmdstat_config|set"} {
		if strings.Contains(stats, cmd+":") {
			t.Errorf("the server ran %s:\n%s", cmd, stats)
		}
	}
	if !strings.Contains(stats, "cmdstat_config|get:") {
		t.Errorf("the server did not run CONFIG GET:\n%s", stats)
	}
}

// runTunnel runs the configuration src (a file of its own) and returns the
// address of its route "redis".
func runTunnel(t *testing.T, src string) string {
	t.Helper()
	path := t.TempDir() + "/tunnel.hcl"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &tconfig.Runner{
		Path:    path,
		Stdout:  io.Discard,
		Logger:  slog.New(slog.DiscardHandler),
		Runtime: hostplugin.RuntimeOptions{CacheDir: plugintest.CacheDir()},
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r.Addr("redis").String()
}

// TestRedisRateLimited chains the built-in ratelimit before resp on one
// route in front of a real redis-server: three redis-cli connections
// pass (the burst) and the fourth gets the limiter's reply and is closed,
// while resp goes on refusing FLUSHALL on the connections that pass.
func TestRedisRateLimited(t *testing.T) {
	redis := redisServer(t)
	src := `
plugin "ratelimit" {
  builtin = "ratelimit"
}
plugin "resp" {
  builtin = "resp"
}
route "redis" {
  listen = "127.0.0.1:0"
  target = "` + redis + `"
  chain {
    plugin = plugin.ratelimit
    config = {
      connections_per_second = 0.001 # one per 1000 s: only the burst passes
      connections_burst      = 3
      reply                  = "-ERR rate limited by the tunnel\r\n"
    }
  }
  chain {
    plugin = plugin.resp
    config = { block = ["FLUSHALL"] }
  }
}
`
	precompileBuiltins(t, "ratelimit", "resp")
	addr := runTunnel(t, src)
	if got := tool(t, "redis-cli", addr, "", "PING"); got != "PONG\n" {
		t.Fatalf("PING: %q", got)
	}
	if got := tool(t, "redis-cli", addr, "", "FLUSHALL"); got != "ERR command 'flushall' is not allowed by the tunnel\n\n" {
		t.Fatalf("FLUSHALL: %q", got)
	}
	if got := tool(t, "redis-cli", addr, "", "SET", "k", "v"); got != "OK\n" {
		t.Fatalf("SET: %q", got)
	}
	got, stderr := toolExit(t, 0, "redis-cli", addr, "", "GET", "k")
	if got != "ERR rate limited by the tunnel\n\n" {
		t.Fatalf("the fourth connection: stdout %q, stderr %q", got, stderr)
	}
}

// TestRedisNulInName sends FLUSHALL and CONFIG SET with a NUL and a
// different suffix after the name each time through tunnel.hcl's Redis
// route: Redis hashes the whole name but compares names with strcasecmp,
// so some of them run the blocked command unless the plugin blocks them.
func TestRedisNulInName(t *testing.T) {
	redis := redisServer(t)
	addr := rootTunnel(t, redis)
	if got := tool(t, "redis-cli", redis, "", "SET", "greeting", "hello"); got != "OK\n" {
		t.Fatalf("SET: %q", got)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	const n = 2000
	for i := range n {
		name := "flushall\x00" + strconv.Itoa(i)
		fmt.Fprintf(&b, "*1\r\n$%d\r\n%s\r\n", len(name), name)
		sub := "set\x00" + strconv.Itoa(i)
		fmt.Fprintf(&b, "*4\r\n$6\r\nCONFIG\r\n$%d\r\n%s\r\n$9\r\nmaxmemory\r\n$7\r\n1234567\r\n", len(sub), sub)
		// The inline forms: a quoted "\x00" is a NUL.
		fmt.Fprintf(&b, "\"flushall\\x00%d\"\r\nconfig \"set\\x00%d\" maxmemory 1234567\r\n", i, i)
	}
	b.WriteString("*1\r\n$4\r\nPING\r\n")
	go c.Write([]byte(b.String()))
	c.SetDeadline(time.Now().Add(toolTimeout))
	var got []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(got, []byte("+PONG\r\n")) {
		k, err := c.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
	}
	if got := tool(t, "redis-cli", redis, "", "GET", "greeting"); got != "hello\n" {
		t.Errorf("the server lost its data: GET greeting = %q", got)
	}
	stats := tool(t, "redis-cli", redis, "", "INFO", "commandstats")
	for _, cmd := range []string{"cmdstat_flushall", "cmdstat_config|set"} {
		if strings.Contains(stats, cmd+":") {
			t.Errorf("the server ran %s", cmd)
		}
	}
}

// TestRedisProtocolErrorKeepsOwedReplies sends, in one write, commands
// and then one Redis refuses as a protocol error, to redis-server directly
// and through tunnel.hcl's Redis route: the client must get the same bytes
// both ways (the replies owed, then the error), and the connection closed.
// The plugin used to close at once, losing the replies.
func TestRedisProtocolErrorKeepsOwedReplies(t *testing.T) {
	redis := redisServer(t)
	addr := rootTunnel(t, redis)
	for _, req := range []string{
		"*1\r\n$4\r\nPING\r\n*1\r\n:5\r\n",
		"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1\r\n$8\r\nFLUSHALL\r\n*x\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$x\r\n",
	} {
		direct := exchangeAll(t, redis, req)
		through := exchangeAll(t, addr, req)
		// Redis itself runs FLUSHALL; the tunnel answers the block error.
		if strings.Contains(req, "FLUSHALL") {
			direct = strings.Replace(direct, "+OK\r\n-ERR Protocol", "-ERR command 'flushall' is not allowed by the tunnel\r\n-ERR Protocol", 1)
		}
		if through != direct {
			t.Errorf("%q:\n through the tunnel %q\n directly           %q", req, through, direct)
		}
	}
}

// exchangeAll writes req to addr in one write and reads until the server
// closes the connection.
func exchangeAll(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(toolTimeout))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%s: after %q: %v", addr, got, err)
	}
	return string(got)
}

// TestRedisRenamedNameSentByClient runs a route that blocks CONFIG SET and
// renames CONFIG for a server that has it renamed: a client sending the
// new name itself got CONFIG SET run (the name was in no list).
func TestRedisRenamedNameSentByClient(t *testing.T) {
	redis := redisServer(t, "--rename-command", "CONFIG", "cfg_s3cr3t")
	precompileBuiltins(t, "resp")
	hcl := `plugin "resp" {
  builtin = "resp"
}
route "redis" {
  listen = "127.0.0.1:0"
  target = "` + redis + `"
  chain {
    plugin = plugin.resp
    config = {
      block  = ["CONFIG SET"]
      rename = { CONFIG = "cfg_s3cr3t" }
    }
  }
}
`
	addr := runTunnel(t, hcl)
	const refused = "ERR command '%s' is not allowed by the tunnel\n\n"
	got := tool(t, "redis-cli", addr, "CONFIG GET hz\nCONFIG SET hz 50\ncfg_s3cr3t SET hz 50\nCFG_S3CR3T set hz 50\n")
	want := "hz\n10\n" + fmt.Sprintf(refused, "config set") + fmt.Sprintf(refused, "cfg_s3cr3t") + fmt.Sprintf(refused, "cfg_s3cr3t")
	if got != want {
		t.Fatalf("redis-cli:\n%s\nwant:\n%s", got, want)
	}
	if got := tool(t, "redis-cli", redis, "", "cfg_s3cr3t", "GET", "hz"); got != "hz\n10\n" {
		t.Errorf("the server's hz changed: %q", got)
	}
}
