package main

// Hostile plugins, each on route B of a two-route tunnel (the binary built
// by TestMain), while route A (no plugin) and route A2 (a benign no-op
// plugin) carry request/response traffic to a Redis server: route A
// loses no request, route B's clients see what the containment promises,
// the process stays within its memory and file descriptors, and it exits
// 0 on SIGTERM afterwards. The guests are in testdata/hostile (WAT sources
// and the .wasm built from them; `make check` there compares them).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// hostile is a running two-route tunnel with a hostile plugin on route B.
type hostile struct {
	p        *proc
	a, a2, b string // route addresses
	req, rep string // route A's request and its reply
}

// redisPing is a RESP PING; redisPong is Redis's reply (an echo server
// answers the request itself).
const (
	redisPing = "*1\r\n$4\r\nPING\r\n"
	redisPong = "+PONG\r\n"
)

// redisBackend starts redis-server on a free loopback port and returns its
// address and the reply to a PING; without redis-server (outside CI) it
// returns an echo server, whose reply is the PING itself.
func redisBackend(t *testing.T) (addr, reply string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is missing under CI: %v", err)
		}
		return echoServer(t), redisPing
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out := newOutput()
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	out.wait(t, "Ready to accept connections")
	return fmt.Sprintf("127.0.0.1:%d", port), redisPong
}

// startHostile runs a tunnel (routes on 127.0.0.1, .2 and .3: a file's
// routes need distinct listen addresses) whose route B runs the guest testdata/hostile/
// guest with the plugin settings extra (HCL lines), in front of an echo
// server.
func startHostile(t *testing.T, guest, extra string) *hostile {
	t.Helper()
	backend, reply := redisBackend(t)
	wasm, err := filepath.Abs(filepath.Join("testdata", "hostile", guest))
	if err != nil {
		t.Fatal(err)
	}
	noop, err := filepath.Abs(filepath.Join("..", "..", "host", "plugin", "testdata", "noop.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	p, addrs := startConfig(t, t.TempDir(), fmt.Sprintf(`
plugin "benign" {
  path         = %q
  memory_limit = "1MiB"
}
plugin "hostile" {
  path         = %q
  %s
}
route "a" {
  listen = "127.0.0.1:0"
  target = %q
  dump { enabled = false }
}
route "a2" {
  listen = "127.0.0.2:0"
  target = %q
  dump { enabled = false }
  chain {
    plugin = plugin.benign
  }
}
route "b" {
  listen = "127.0.0.3:0"
  target = %q
  dump { enabled = false }
  chain {
    plugin = plugin.hostile
  }
}
`, noop, wasm, extra, backend, backend, echoServer(t)), "a", "a2", "b")
	h := &hostile{p: p, a: addrs["a"], a2: addrs["a2"], b: addrs["b"], req: redisPing, rep: reply}
	// Warm up both A routes: what their first connections make lazily
	// (the benign plugin's instances) is not a leak.
	h.warm(t, h.a)
	h.warm(t, h.a2)
	return h
}

// aClients is how many clients the A routes' helpers run at once.
const aClients = 10

// clients runs aClients clients on addr, each sending a request and
// reading its reply in turn on one connection as long as more(n) holds for
// the n requests it has made so far, and returns each one's count and
// their errors once all have ended.
func (h *hostile) clients(addr string, more func(n int) bool) ([]int, error) {
	var wg sync.WaitGroup
	counts := make([]int, aClients)
	errs := make([]error, aClients)
	for i := range aClients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, cliTimeout)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * cliTimeout))
			got := make([]byte, len(h.rep))
			for n := 0; more(n); n++ {
				if _, err := io.WriteString(c, h.req); err != nil {
					errs[i] = fmt.Errorf("request %d: %w", n, err)
					return
				}
				if _, err := io.ReadFull(c, got); err != nil || string(got) != h.rep {
					errs[i] = fmt.Errorf("request %d: reply %q, %v; want %q", n, got, err, h.rep)
					return
				}
				counts[i]++
			}
		})
	}
	wg.Wait()
	return counts, errors.Join(errs...)
}

// lost fails the test when route addr lost a request.
func (h *hostile) lost(t *testing.T, addr string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("route %s lost requests:\n%v\nstderr:\n%s", addr, err, h.p.stderr)
	}
}

// warm makes 10 requests on each of the aClients connections to addr.
func (h *hostile) warm(t *testing.T, addr string) {
	t.Helper()
	_, err := h.clients(addr, func(n int) bool { return n < 10 })
	h.lost(t, addr, err)
}

// minBusy is how many requests each of busy's clients makes at least.
const minBusy = 100

// busy starts aClients clients on addr (as requests does) that work until
// the returned end is called, while the test waits for what route B's
// plugin does. end lets each client finish at least minBusy requests,
// stops them, fails the test at any error (route A must lose nothing) and
// returns how many requests they made. The clients stop by themselves
// 2 × cliTimeout after the start (or at the end of the test) whatever
// happens.
func (h *hostile) busy(t *testing.T, addr string) (end func() int) {
	t.Helper()
	stop := make(chan struct{})
	bound := time.Now().Add(2 * cliTimeout)
	type result struct {
		counts []int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		counts, err := h.clients(addr, func(n int) bool {
			if time.Now().After(bound) {
				return false
			}
			select {
			case <-stop:
				return n < minBusy
			default:
				return true
			}
		})
		done <- result{counts, err}
	}()
	var once sync.Once
	var r result
	finish := func() {
		once.Do(func() {
			close(stop)
			r = <-done
		})
	}
	t.Cleanup(finish)
	return func() int {
		t.Helper()
		finish()
		h.lost(t, addr, r.err)
		total := 0
		for i, n := range r.counts {
			if n < minBusy {
				t.Fatalf("route %s: client %d made %d requests, want at least %d", addr, i, n, minBusy)
			}
			total += n
		}
		return total
	}
}

// bLoad is clients on route B, each connecting again and again.
type bLoad struct {
	*testkit.Load
	conns atomic.Int64 // connections made (or refused) so far
}

// load starts clients on route B, each connecting again and again and
// conversing with conv, until Stop; Wait waits for connections to end
// (each a step), and a client's first error ends it and is reported by
// Wait or Stop. With closing, B is expected to close connections: a reset
// before connect returns is no error.
func (h *hostile) load(clients int, closing bool, conv func(c *net.TCPConn) error) *bLoad {
	l := &bLoad{}
	l.Load = testkit.StartLoad(clients, func(_, n int) error {
		c, err := net.DialTimeout("tcp", h.b, cliTimeout)
		if err != nil && closing && errors.Is(err, syscall.ECONNRESET) {
			// Refused by a tripped plugin before connect returned.
			err = nil
		} else if err == nil {
			c.SetDeadline(time.Now().Add(cliTimeout))
			err = conv(c.(*net.TCPConn))
			c.Close()
		}
		l.conns.Add(1)
		if err != nil {
			return fmt.Errorf("route B, connection %d: %w", n, err)
		}
		return nil
	})
	return l
}

// stop stops the load and fails the test at its clients' errors.
func (l *bLoad) stop(t *testing.T) int {
	t.Helper()
	if errs := l.Stop(); len(errs) > 0 {
		t.Fatalf("route B's clients (%d connections): %v", l.conns.Load(), errors.Join(errs...))
	}
	return int(l.conns.Load())
}

// closedSilently sends a byte and expects the tunnel to close the
// connection without a byte back (FIN or reset).
func closedSilently(c *net.TCPConn) error {
	if _, err := c.Write([]byte("x")); err != nil {
		return nil // refused while the plugin is tripped: closed already
	}
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		return fmt.Errorf("got %q from a connection the plugin failed on", b)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("want the connection closed, got %w", err)
	}
	return nil
}

// fds is the number of open file descriptors of the tunnel.
func (h *hostile) fds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", h.p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// memory returns the tunnel's VmRSS and VmHWM (peak RSS) in bytes.
func (h *hostile) memory(t *testing.T) (rss, hwm uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) uint64 {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+) kB$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no %s in /proc/PID/status:\n%s", name, b)
		}
		v, _ := strconv.ParseUint(string(m[1]), 10, 64)
		return v << 10
	}
	return field("VmRSS"), field("VmHWM")
}

// finish checks that the connections' descriptors are all closed again
// (back to fds0 within a generous bound), then stops the tunnel with
// SIGTERM and expects exit status 0.
func (h *hostile) finish(t *testing.T, fds0 int) {
	t.Helper()
	deadline := time.Now().Add(cliTimeout)
	for n := h.fds(t); n > fds0; n = h.fds(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%d file descriptors open after the load, %d before", n, fds0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.p.cmd.Process.Signal(syscall.SIGTERM)
	if code := h.p.exitCode(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0; stderr:\n%s", code, h.p.stderr)
	}
}

// spinTimeout is TestHostileSpin's call_timeout: every request route A
// and A2 make in the test must be answered before B's first spinning call
// runs out of it. Those 2 × aClients × spinRequests requests take a few
// milliseconds on an idle machine, so only a route that waits on B's
// plugin (or a spin that leaves no CPU to the rest) comes near it.
const spinTimeout = 4 * time.Second

// spinRequests is how many requests each of TestHostileSpin's A clients
// makes while B's plugin spins.
const spinRequests = 50

// TestHostileSpin: B's plugin computes without end on every call (the
// breaker off, so that it never stops). While its calls spin, routes A
// and A2 answer all their requests, losing none, before the first of
// those calls runs out of its call_timeout; then B's clients are closed
// without a byte. The test asserts what happens while B spins, not a
// rate: how much of A's rate a spinning neighbour leaves is a benchmark
// figure (examples/bench's "noisy neighbour", BENCHMARKS.md), since a
// rate measured in a test depends on what else the machine runs.
func TestHostileSpin(t *testing.T) {
	t.Parallel()
	h := startHostile(t, "spin.wasm", fmt.Sprintf(`memory_limit = "1MiB"
  call_timeout = "%s"
  instances = 2
  trip_failures = 0`, spinTimeout))
	fds0 := h.fds(t)
	cpu0 := h.cpu(t)
	b := h.load(4, true, closedSilently)
	// B's calls spin once the tunnel burns CPU with no other traffic: 4
	// connections cost it well under a millisecond.
	const spun = 100 * time.Millisecond
	deadline := time.Now().Add(cliTimeout)
	for h.cpu(t)-cpu0 < spun {
		if time.Now().After(deadline) {
			t.Fatalf("the tunnel used %v of CPU in %v with B's plugin spinning, want %v", h.cpu(t)-cpu0, cliTimeout, spun)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	var wg sync.WaitGroup
	counts := map[string][]int{}
	errs := map[string]error{}
	var mu sync.Mutex
	for _, addr := range []string{h.a, h.a2} {
		wg.Go(func() {
			n, err := h.clients(addr, func(n int) bool { return n < spinRequests })
			mu.Lock()
			counts[addr], errs[addr] = n, err
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	const timedOut = `msg="plugin failed" route=b plugin=hostile callback=tunnel_on_data cause="call exceeded its time limit"`
	spinning := !strings.Contains(h.p.stderr.String(), timedOut)
	for _, addr := range []string{h.a, h.a2} {
		h.lost(t, addr, errs[addr])
	}
	t.Logf("routes A and A2 answered %d requests each in %v while B's plugin spun", aClients*spinRequests, took)
	if !spinning {
		t.Errorf("a call of B's plugin ran out of its %v before routes A and A2 answered their %d requests each (they took %v): they waited on B's plugin",
			spinTimeout, aClients*spinRequests, took)
	}
	h.p.stderr.wait(t, timedOut)
	if conns := b.stop(t); conns == 0 {
		t.Fatal("no connection on route B")
	}
	h.finish(t, fds0)
}

// cpu is the CPU time the tunnel has used (user and system).
func (h *hostile) cpu(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		t.Fatalf("short /proc/PID/stat: %q", b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/PID/stat: %q", b)
	}
	// Linux reports clock ticks of 1/100 s (USER_HZ) to user space.
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// TestHostileMemoryBomb: B's plugin takes all the memory it may on every
// call and traps (2 instances of 32 MiB, the breaker off, so instances are
// made and dropped as fast as clients come). Route A works until 16 bombs
// went off. The tunnel's peak RSS stays within its RSS before the load
// plus the plugin's 64 MiB (and a margin for the host's own buffers), and
// the memory goes back to the OS once the instances are gone.
func TestHostileMemoryBomb(t *testing.T) {
	t.Parallel()
	const limit, instances, bombs = 32 << 20, 2, 16
	h := startHostile(t, "bomb.wasm", fmt.Sprintf(`memory_limit = "32MiB"
  instances = %d
  trip_failures = 0`, instances))
	fds0 := h.fds(t)
	rss0, _ := h.memory(t)
	const bomb = `msg="plugin failed" route=b plugin=hostile callback=tunnel_on_data cause="the guest's memory reached its limit of 32 MiB (memory_limit): wasm error: unreachable`
	b := h.load(4, true, closedSilently)
	end := h.busy(t, h.a)
	h.p.stderr.waitUntil(t, cliTimeout, fmt.Sprintf("logged %d bombs", bombs), func(s string) bool { return strings.Count(s, bomb) >= bombs })
	requests := end()
	conns := b.stop(t)
	failed := strings.Count(h.p.stderr.String(), bomb)
	const margin = 32 << 20
	rss, hwm := h.memory(t)
	t.Logf("%d connections, %d bombs, %d requests on A: RSS %d MiB before, %d MiB after, peak %d MiB", conns, failed, requests, rss0>>20, rss>>20, hwm>>20)
	if hwm > rss0+instances*limit+margin {
		t.Errorf("peak RSS %d MiB, more than %d MiB before the load + %d × %d MiB + %d MiB", hwm>>20, rss0>>20, instances, limit>>20, margin>>20)
	}
	// The failed instances' memory is unmapped when they are closed.
	deadline := time.Now().Add(cliTimeout)
	for rss > rss0+limit/2 {
		if time.Now().After(deadline) {
			t.Fatalf("RSS %d MiB after the load, %d MiB before: the bombs' memory was not given back", rss>>20, rss0>>20)
		}
		time.Sleep(50 * time.Millisecond)
		rss, _ = h.memory(t)
	}
	h.finish(t, fds0)
}

// TestHostileOutOfBounds: B's plugin passes send a pointer outside its
// memory. Every B connection is closed without a byte (the breaker's
// default settings trip it after 5 failures: later connections are
// refused the same way, 20 of them), and the log says why; route A works
// throughout.
func TestHostileOutOfBounds(t *testing.T) {
	t.Parallel()
	h := startHostile(t, "oob.wasm", `memory_limit = "1MiB"`)
	fds0 := h.fds(t)
	b := h.load(4, true, closedSilently)
	end := h.busy(t, h.a)
	h.p.stderr.wait(t, `msg="plugin failed" route=b plugin=hostile callback=tunnel_on_data cause="ABI violation: send: range \[2147418112, 2147418128\) is outside the guest's memory`)
	h.p.stderr.wait(t, `msg="plugin tripped" route=b plugin=hostile policy=close failures=5`)
	b.Forget()
	b.Wait(t, 20, cliTimeout)
	end()
	b.stop(t)
	h.finish(t, fds0)
}

// TestHostileAmplifier: B's plugin sends each client chunk 100 times. The
// echo server behind B returns all of it, route A is unaffected, and the
// close log counts the bytes on each leg: 10 from the client, 1,000 to the
// server and back.
func TestHostileAmplifier(t *testing.T) {
	t.Parallel()
	h := startHostile(t, "amp.wasm", `memory_limit = "1MiB"`)
	fds0 := h.fds(t)
	const msg = "0123456789"
	want := strings.Repeat(msg, 100)
	b := h.load(4, false, func(c *net.TCPConn) error {
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		// Each message as one chunk: wait for its echo before the end.
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			return fmt.Errorf("got %d bytes (%v), want %q ×100", len(bytes.TrimRight(got, "\x00")), err, msg)
		}
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			return fmt.Errorf("after the half-close: %q, %v", rest, err)
		}
		return nil
	})
	end := h.busy(t, h.a)
	h.p.stderr.wait(t, `msg="connection closed" conn=\d+ route=b .*bytes_from_client=10 bytes_to_server=1000 bytes_from_server=1000 bytes_to_client=1000`)
	b.Wait(t, 20, cliTimeout)
	end()
	b.stop(t)
	h.finish(t, fds0)
}

// TestHostileTrap1000: B's plugin (one instance) traps on the 1000th
// client chunk it sees. The B client gets 999 echoes, then its connection
// is closed; the next connection gets a new instance and works. Route A
// works throughout.
func TestHostileTrap1000(t *testing.T) {
	t.Parallel()
	h := startHostile(t, "trap1000.wasm", `memory_limit = "1MiB"
  instances = 1`)
	fds0 := h.fds(t)
	c := dial(t, h.b)
	done := make(chan int, 1)
	end := h.busy(t, h.a)
	go func() {
		echoed := 0
		b := make([]byte, 1)
		for ; echoed < 1000; echoed++ {
			if _, err := c.Write([]byte{'x'}); err != nil {
				break
			}
			if _, err := io.ReadFull(c, b); err != nil {
				break
			}
		}
		c.Close()
		done <- echoed
	}()
	echoed := <-done
	end()
	if echoed != 999 {
		t.Errorf("%d chunks echoed before the connection was closed, want 999", echoed)
	}
	h.p.stderr.wait(t, `msg="plugin failed" route=b plugin=hostile callback=tunnel_on_data cause="wasm error: unreachable`)
	converse(t, dial(t, h.b), "after the trap\n")
	h.finish(t, fds0)
}

// TestHostileLogFlood: B's plugin logs 1,000 lines per chunk. The log gets
// at most the plugin's burst (200) plus its rate (100 per second) of them,
// and a line counting the suppressed ones; B's chunks are still forwarded.
// Route A works until the burst is used up.
func TestHostileLogFlood(t *testing.T) {
	t.Parallel()
	h := startHostile(t, "logflood.wasm", `memory_limit = "1MiB"`)
	fds0 := h.fds(t)
	const flood = `msg=flood route=b plugin=hostile`
	start := time.Now()
	b := h.load(2, false, func(c *net.TCPConn) error {
		for range 3 {
			if _, err := c.Write([]byte("ping\n")); err != nil {
				return err
			}
			got := make([]byte, 5)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping\n" {
				return fmt.Errorf("echo %q, %v", got, err)
			}
		}
		return nil
	})
	end := h.busy(t, h.a)
	// Each chunk logs 1,000 lines: the burst is gone after the first.
	h.p.stderr.waitUntil(t, cliTimeout, "logged the burst of flood lines", func(s string) bool { return strings.Count(s, flood) >= 200 })
	b.Wait(t, 4, cliTimeout)
	end()
	conns := b.stop(t)
	elapsed := time.Since(start)
	h.p.stderr.wait(t, `msg="plugin hostile: \d+ log lines suppressed" route=b plugin=hostile suppressed=\d+ log_rate=100 log_burst=200`)
	lines := strings.Count(h.p.stderr.String(), flood)
	if limit := 200 + int(100*elapsed.Seconds()) + 100; lines == 0 || lines > limit {
		t.Errorf("%d flood lines logged in %s (%d connections, %d chunks × 1,000 lines), want 1 to %d",
			lines, elapsed.Round(time.Millisecond), conns, 3*conns, limit)
	}
	h.finish(t, fds0)
}
