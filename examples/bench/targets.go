//go:build linux

package main

// The forwarders under test and the backends behind them. Every forwarder
// is its own process (or process group) per backend, on its own port, so
// its CPU time and memory belong to one kind of load.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Backend names.
const (
	backIperf = "iperf3"
	backRedis = "redis"
	backEcho  = "echo"    // one 32-byte request, echoed, then the server closes
	backIdle  = "echoall" // echoes every 32-byte message until the client closes
)

// target is one way of reaching the backends.
type target struct {
	Name    string `json:"name"`
	Desc    string `json:"description"`
	Command string `json:"command,omitempty"` // the command line, with LISTEN and BACKEND placeholders
	Reason  string `json:"not_available,omitempty"`

	// launch starts a forwarder from 127.0.0.1:port to backend; nil for direct.
	launch func(b *bench, name string, port int, backend string) (*proc, error)
	fwds   map[string]*fwd // by backend name
	// only, when set, lists the backends the target is for (a protocol
	// filter such as resp has nothing to do in front of iperf3).
	only  []string
	pprof bool // launch may serve pprof (tunnel)
}

// fwd is one forwarder (or the backend itself, for direct).
type fwd struct {
	addr      string
	proc      *proc  // nil for direct
	pprofAddr string // host:port of the tunnel's pprof server, if any
}

func (t *target) available() bool { return t.Reason == "" }

// pid is the forwarder process measured, or 0 for direct.
func (f *fwd) pid() int {
	if f.proc == nil {
		return 0
	}
	return f.proc.pid
}

// newTargets returns every known target, in report order, with the
// availability decided from what is installed and built.
func (b *bench) newTargets() []*target {
	tunnel := func(extra ...string) func(b *bench, name string, port int, backend string) (*proc, error) {
		return func(b *bench, name string, port int, backend string) (*proc, error) {
			argv := []string{b.tunnelBin, "--from", fmt.Sprintf("127.0.0.1:%d", port), "--to", backend,
				"--dump", "none", "--log-level", "warn", "--grace", "1s", "--cache-dir", filepath.Join(b.tmp, "wazero-cache")}
			if b.pprofDir != "" {
				pp, err := b.ports.next()
				if err != nil {
					return nil, err
				}
				argv = append(argv, "--pprof", fmt.Sprintf("127.0.0.1:%d", pp))
			}
			argv = append(argv, extra...)
			argv = append(argv, b.tunnelFlags...)
			return b.procs.start(name, argv, startOpts{pidns: true})
		}
	}
	ts := []*target{
		{Name: "direct", Desc: "no forwarder: the client connects to the backend"},
		{Name: "socat", Desc: "socat, one fork per connection",
			Command: "socat TCP4-LISTEN:PORT,bind=127.0.0.1,reuseaddr,fork,backlog=4096 TCP4:BACKEND",
			launch: func(b *bench, name string, port int, backend string) (*proc, error) {
				return b.procs.start(name, []string{b.bin["socat"], fmt.Sprintf("TCP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,backlog=4096", port), "TCP4:" + backend}, startOpts{pidns: true})
			}},
		{Name: "haproxy", Desc: "haproxy mode tcp, default threads (one per CPU)",
			Command: "haproxy -db -f haproxy.cfg  (mode tcp; bind 127.0.0.1:PORT; server BACKEND)",
			launch:  launchHaproxy},
		{Name: "nginx", Desc: "nginx stream proxy_pass, worker_processes auto",
			Command: "nginx -p DIR -c nginx.conf -e error.log  (stream { server { listen PORT; proxy_pass BACKEND; } })",
			launch:  launchNginx},
		{Name: "naive", Desc: "a naive Go forwarder: a goroutine per direction, io.Copy, no half-close (examples/bench/naive.go)",
			Command: "TUNNEL_BENCH_NAIVE_CHILD=LISTEN,BACKEND bench  (the benchmark binary itself)",
			launch: func(b *bench, name string, port int, backend string) (*proc, error) {
				self, err := os.Executable()
				if err != nil {
					return nil, fmt.Errorf("naive forwarder: %w", err)
				}
				return b.procs.start(name, []string{self}, startOpts{env: []string{fmt.Sprintf("%s=127.0.0.1:%d,%s", naiveChildEnv, port, backend)}, pidns: true})
			}},
		{Name: "tunnel", Desc: "the tunnel, no plugin (kernel splice)",
			Command: "tunnel --from LISTEN --to BACKEND --dump none", launch: tunnel(), pprof: true},
	}
	ts = append(ts, &target{Name: "tunnel-capture", Desc: "the tunnel, no plugin, capturing both legs as pcapng (256 MiB files, 2 kept, in the bench's temporary directory)",
		Command: "tunnel --from LISTEN --to BACKEND --dump none --capture TMP/NAME.pcapng --capture-max-size 256MiB --capture-max-files 2",
		launch: func(b *bench, name string, port int, backend string) (*proc, error) {
			return tunnel("--capture", filepath.Join(b.tmp, name+".pcapng"), "--capture-max-size", "256MiB", "--capture-max-files", "2")(b, name, port, backend)
		}, pprof: true})
	ts = append(ts, b.adminTarget(tunnel))
	ts = append(ts, b.accessLogTarget(tunnel)) // accesslog.go
	ts = append(ts, b.respTarget(tunnel))      // resp.go
	if b.noopWasm != "" {
		ts = append(ts, &target{Name: "tunnel-noop", Desc: "the tunnel, no-op WASM plugin on both directions (" + b.noopDesc + ")",
			Command: "tunnel --from LISTEN --to BACKEND --dump none --plugin noop.wasm", launch: tunnel("--plugin", b.noopWasm), pprof: true})
	} else {
		ts = append(ts, &target{Name: "tunnel-noop", Reason: b.noopWhy})
	}
	if b.noopWatWasm != "" {
		ts = append(ts, &target{Name: "tunnel-noop-wat", Desc: "the tunnel, no-op WAT plugin (host/plugin/testdata/noop.wasm) on both directions",
			Command: "tunnel --from LISTEN --to BACKEND --dump none --plugin host/plugin/testdata/noop.wasm", launch: tunnel("--plugin", b.noopWatWasm), pprof: true})
	}
	if b.replaceWasm != "" {
		ts = append(ts, &target{Name: "tunnel-replace", Desc: "the tunnel, replace plugin on both directions, a pattern that never matches",
			Command: "tunnel --from LISTEN --to BACKEND --dump none --plugin replace.wasm --plugin-config '" + b.replaceConfig + "'",
			launch:  tunnel("--plugin", b.replaceWasm, "--plugin-config", b.replaceConfig), pprof: true})
	} else {
		ts = append(ts, &target{Name: "tunnel-replace", Reason: b.replaceWhy})
	}
	for _, t := range ts {
		switch t.Name {
		case "socat", "haproxy":
			if b.bin[t.Name] == "" {
				t.Reason = t.Name + " is not installed"
			}
		case "nginx":
			if b.bin["nginx"] == "" {
				t.Reason = "nginx is not installed"
			} else if _, err := nginxStreamModule(b.bin["nginx"]); err != nil {
				t.Reason = err.Error()
			}
		}
		if strings.HasPrefix(t.Name, "tunnel-") && t.Reason == "" && !b.tunnelPlugins {
			t.Reason = "this tunnel binary has no --plugin flag"
		}
	}
	return ts
}

func launchHaproxy(b *bench, name string, port int, backend string) (*proc, error) {
	return startHaproxy(b, name, port, backend, "", "")
}

// startHaproxy runs haproxy in mode tcp from port to backend; global and
// bind are extra lines of its global section and options of its bind line
// (the TLS target's certificate).
func startHaproxy(b *bench, name string, port int, backend, global, bind string) (*proc, error) {
	// haproxy refuses to start when maxconn needs more descriptors than
	// RLIMIT_NOFILE allows (two per proxied connection).
	cfg := fmt.Sprintf(`global
	maxconn %d
%sdefaults
	mode tcp
	timeout connect 5s
	timeout client 1h
	timeout server 1h
frontend fe
	bind 127.0.0.1:%d%s
	default_backend be
backend be
	server s1 %s
`, max(100, (int(b.nofile)-200)/2), global, port, bind, backend)
	path := filepath.Join(b.tmp, name+".cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	return b.procs.start(name, []string{b.bin["haproxy"], "-db", "-f", path}, startOpts{pidns: true})
}

func launchNginx(b *bench, name string, port int, backend string) (*proc, error) {
	return startNginx(b, name, port, backend, "", "")
}

// startNginx runs nginx's stream proxy from port to backend; listen and
// server are extra parameters of its listen directive and extra directives
// of its server block (the TLS target's ssl and certificate).
func startNginx(b *bench, name string, port int, backend, listen, server string) (*proc, error) {
	dir := filepath.Join(b.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx prefix: %w", err)
	}
	// The workers run as nobody; they only need the sockets.
	if err := os.Chmod(b.tmp, 0o755); err != nil {
		return nil, err
	}
	load, err := nginxStreamModule(b.bin["nginx"])
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`%s
worker_processes auto;
worker_rlimit_nofile %d;
daemon off;
master_process on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections %d; }
stream {
	server {
		listen 127.0.0.1:%d%s;
%s		proxy_pass %s;
	}
}
`, load, b.nofile, dir, dir, max(1024, b.nofile-100), port, listen, server, backend)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("nginx config: %w", err)
	}
	return b.procs.start(name, []string{b.bin["nginx"], "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log")}, startOpts{pidns: true})
}

// startBackends starts the iperf3 and redis servers (when installed) and
// the in-process echo servers.
func (b *bench) startBackends(ctx context.Context) error {
	b.backends = map[string]string{}
	if b.bin["iperf3"] != "" {
		port, err := b.ports.next()
		if err != nil {
			return err
		}
		p, err := b.procs.start("iperf3-server", []string{b.bin["iperf3"], "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port)}, startOpts{pidns: true})
		if err != nil {
			return err
		}
		if err := waitListening(ctx, p, port, 10*time.Second); err != nil {
			return err
		}
		b.backends[backIperf] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	if b.bin["redis-server"] != "" && b.bin["redis-benchmark"] != "" {
		port, err := b.ports.next()
		if err != nil {
			return err
		}
		p, err := b.procs.start("redis-server", []string{b.bin["redis-server"], "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", b.tmp, "--maxclients", "10000"}, startOpts{pidns: true})
		if err != nil {
			return err
		}
		if err := waitListening(ctx, p, port, 10*time.Second); err != nil {
			return err
		}
		b.backends[backRedis] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	e, err := startEcho(false)
	if err != nil {
		return err
	}
	b.echoes = append(b.echoes, e)
	b.backends[backEcho] = e.ln.Addr().String()
	return nil
}

// echoChildEnv makes the benchmark binary an echo-everything server: the
// idle-connection test runs its backend in a child process so that the
// benchmark's own file descriptors go to the client sockets only.
const echoChildEnv = "TUNNEL_BENCH_ECHO_CHILD"

// echoChild is the main of the echo child process: it prints its address
// and serves until killed.
func echoChild() int {
	e, err := startEcho(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", e.ln.Addr())
	select {}
}

// startIdleBackend starts the echo child and returns its address.
func (b *bench) startIdleBackend(ctx context.Context) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("idle backend: %w", err)
	}
	p, err := b.procs.start("echo-backend", []string{self}, startOpts{env: []string{echoChildEnv + "=1"}, pidns: true})
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if addr, ok := strings.CutPrefix(strings.TrimSpace(p.out.String()), "listening "); ok {
			return p, addr, nil
		}
		if p.exited() || time.Now().After(deadline) {
			b.procs.remove(p, time.Second)
			return nil, "", fmt.Errorf("idle backend did not start: %s", p.describeExit())
		}
		select {
		case <-ctx.Done():
			b.procs.remove(p, time.Second)
			return nil, "", context.Cause(ctx)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startForwarders starts, for every available target, one forwarder per
// backend in use. A target whose forwarder fails to start is marked not
// available with the reason, unless required.
func (b *bench) startForwarders(ctx context.Context, ts []*target, backends []string, required map[string]bool) error {
	for _, t := range ts {
		if !t.available() {
			continue
		}
		t.fwds = map[string]*fwd{}
		for _, back := range backends {
			if len(t.only) > 0 && !slices.Contains(t.only, back) {
				continue
			}
			addr, ok := b.backends[back]
			if !ok {
				continue
			}
			f, err := b.startForwarder(ctx, t, back, addr)
			if err != nil {
				if required[t.Name] {
					return fmt.Errorf("target %s: %w", t.Name, err)
				}
				t.Reason = "failed to start: " + err.Error()
				b.stopForwarders(t)
				break
			}
			t.fwds[back] = f
		}
	}
	return nil
}

func (b *bench) startForwarder(ctx context.Context, t *target, back, addr string) (*fwd, error) {
	if t.launch == nil {
		return &fwd{addr: addr}, nil
	}
	port, err := b.ports.next()
	if err != nil {
		return nil, err
	}
	p, err := t.launch(b, t.Name+"-"+back, port, addr)
	if err != nil {
		return nil, err
	}
	f := &fwd{addr: fmt.Sprintf("127.0.0.1:%d", port), proc: p}
	if i := indexOf(p.argv, "--pprof"); i >= 0 {
		f.pprofAddr = p.argv[i+1]
	}
	if err := waitListening(ctx, p, port, 60*time.Second); err != nil {
		b.procs.remove(p, time.Second)
		return nil, err
	}
	return f, nil
}

func (b *bench) stopForwarders(t *target) {
	for back, f := range t.fwds {
		if f.proc != nil {
			b.procs.remove(f.proc, 3*time.Second)
		}
		delete(t.fwds, back)
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s && i+1 < len(list) {
			return i
		}
	}
	return -1
}

// echoServer is an in-process TCP echo backend. In oneshot mode it reads one
// echoMsg-byte request, writes it back and closes (so the TIME_WAIT state
// lands on the server side, not on the load generator's ports); otherwise it
// echoes every message until the client closes.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

const echoMsg = 32

func startEcho(stream bool) (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("echo backend: %w", err)
	}
	e := &echoServer{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off, keep serving
				continue
			}
			e.mu.Lock()
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer func() {
					e.mu.Lock()
					delete(e.conns, c)
					e.mu.Unlock()
					c.Close()
				}()
				var buf [echoMsg]byte
				for {
					if !stream {
						c.SetDeadline(time.Now().Add(30 * time.Second))
					}
					if _, err := io.ReadFull(c, buf[:]); err != nil {
						return
					}
					if _, err := c.Write(buf[:]); err != nil || !stream {
						return
					}
				}
			}()
		}
	}()
	return e, nil
}

// close stops accepting, closes open connections and waits for every
// goroutine of the server.
func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// build builds cmd/tunnel and the plugins, or takes the given files.
func (b *bench) build(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
		if _, err := os.Stat(goBin); err != nil {
			return errors.New("no go command in PATH (needed to build the tunnel; or give -tunnel-bin)")
		}
	}
	gobuild := func(what string, env []string, args ...string) error {
		argv := append([]string{goBin, "build"}, args...)
		p, err := b.procs.start("go build "+what, argv, startOpts{dir: b.root, env: env})
		if err != nil {
			return err
		}
		defer b.procs.remove(p, time.Second)
		select {
		case <-p.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if p.err != nil {
			return fmt.Errorf("go build %s: %s", what, p.describeExit())
		}
		return nil
	}
	if b.tunnelBin == "" {
		b.tunnelBin = filepath.Join(b.tmp, "tunnel")
		if err := gobuild("./cmd/tunnel", nil, "-o", b.tunnelBin, "./cmd/tunnel"); err != nil {
			return err
		}
	}
	help, _ := exec.CommandContext(ctx, b.tunnelBin, "--help").CombinedOutput()
	b.tunnelPlugins = strings.Contains(string(help), "-plugin")

	wasip1 := []string{"GOOS=wasip1", "GOARCH=wasm"}
	plugin := func(name string) (string, string) {
		src := filepath.Join(b.root, "plugins", name)
		if _, err := os.Stat(src); err != nil {
			return "", fmt.Sprintf("plugins/%s does not exist yet", name)
		}
		out := filepath.Join(b.tmp, name+".wasm")
		if err := gobuild("plugins/"+name, wasip1, "-buildmode=c-shared", "-o", out, "./plugins/"+name); err != nil {
			return "", err.Error()
		}
		return out, ""
	}
	wat := filepath.Join(b.root, "host", "plugin", "testdata", "noop.wasm")
	if _, err := os.Stat(wat); err != nil {
		wat = ""
	}
	switch {
	case b.noopWasm != "":
		b.noopDesc = b.noopWasm
	default:
		b.noopWasm, b.noopWhy = plugin("noop")
		b.noopDesc = "plugins/noop, a Go guest"
		if b.noopWasm == "" && wat != "" {
			b.noopWasm, b.noopDesc, wat = wat, "host/plugin/testdata/noop.wasm, a WAT guest", ""
		}
	}
	b.noopWatWasm = wat
	if b.replaceWasm == "" {
		b.replaceWasm, b.replaceWhy = plugin("replace")
	}
	return nil
}
