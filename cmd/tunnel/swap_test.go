package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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

// The zero-downtime upgrade: a second tunnel binds the same address
// (reuse_port) while the first serves; the first is stopped with SIGTERM
// and drains. On Linux, the clients still in the first one's accept queue
// when it closes its listener are handed to the second only with
// net.ipv4.tcp_migrate_req = 1; the test sets it in a network namespace of
// its own (unshare -n, as root) when the current one does not have it, so
// it changes nothing on the machine.

// swapEnv marks the run of TestZeroDowntimeSwap inside its namespace.
const swapEnv = "TUNNEL_SWAP_NETNS"

func migrateReq() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	return err == nil && string(bytes.TrimSpace(b)) == "1"
}

// TestZeroDowntimeSwap: under steady load (clients that connect, PING
// redis-server through the tunnel and hang up, in a loop, plus
// redis-benchmark reconnecting for every request), tunnel B starts on the
// address tunnel A serves, then A gets SIGTERM: /readyz turns 503 at once
// (before the drain delay is over), A keeps accepting for drain_delay,
// closes its listeners, finishes its connections, logs its counts and
// exits 0. Not one connection or request fails across the swap, and both
// tunnels served. The drain delay is 1 s: the load runs at full CPU
// throughout, and nothing the test asserts needs a longer one.
func TestZeroDowntimeSwap(t *testing.T) {
	t.Parallel()
	if !migrateReq() {
		if os.Getenv(swapEnv) != "" {
			t.Fatal("net.ipv4.tcp_migrate_req is still 0 in the test's own network namespace")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c",
			`ip link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req && exec "$0" -test.run '^TestZeroDowntimeSwap$' -test.v -test.count=1`, os.Args[0])
		cmd.Env = append(os.Environ(), swapEnv+"=1", binaryEnv+"="+tunnelBin)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestZeroDowntimeSwap") {
			t.Fatalf("the swap in a network namespace of its own (needs root for unshare -n, or tcp_migrate_req=1 here): %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "swap_test.go") {
				t.Log(strings.TrimSpace(l))
			}
		}
		return
	}
	redisAddr := startRedis(t)
	addr := testkit.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	const drainDelay = time.Second
	os.WriteFile(path, []byte(`
admin {
  listen      = "127.0.0.1:0"
  drain_delay = "`+drainDelay.String()+`"
}
route "redis" {
  listen     = "`+addr+`"
  target     = "`+redisAddr+`"
  reuse_port = true
  dump { enabled = false }
}
`), 0o644)

	a := start(t, "--config", path, "--grace", "10s")
	adminA := adminURL(t, a)
	waitReady(t, a, adminA, "no configuration is running yet")

	// The load: clients that each make one request per connection.
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Minute) // bounded whatever happens
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 1_000_000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := ping(addr); err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 10 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	var benchRuns, benchRequests atomic.Int64
	benchErr := make(chan error, 1)
	wg.Go(func() { benchErr <- redisBenchmark(addr, stop, deadline, &benchRuns, &benchRequests) })
	waitCount(t, &ok, 500, "requests through A alone")

	b := start(t, "--config", path, "--grace", "10s")
	adminB := adminURL(t, b)
	waitReady(t, b, adminB, "no configuration is running yet")
	// The kernel spreads new connections over both by hash.
	for start := time.Now(); ; {
		if v := series(scrapeMetrics(t, adminB), "tunnel_connections_total", "route", "redis"); v >= 200 {
			break
		}
		if time.Since(start) > cliTimeout {
			t.Fatalf("B served fewer than 200 connections in %v", cliTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}

	signalled := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	// /readyz turns 503 at once: before the drain delay is over, which A
	// logs (a bound that does not depend on how busy the machine is).
	const over = `msg="drain delay over: closing the listeners"`
	for {
		wasOver := strings.Contains(a.stderr.String(), over)
		status, body := curl(t, adminA+"/readyz")
		if status == 503 && body == "not ready: draining: POST /drain or a shutdown asked new connections to go elsewhere\n" {
			break
		}
		if wasOver {
			t.Fatalf("/readyz still %d %q %v after SIGTERM, after the drain delay", status, body, time.Since(signalled))
		}
	}
	notReady := time.Since(signalled)
	a.stderr.wait(t, `msg="draining: not ready, still accepting" drain_delay=1s accepted=\d+ open=\d+ errors=0`)
	a.stderr.wait(t, over)
	closing := time.Since(signalled)
	if code := a.exitCode(t); code != 0 {
		t.Fatalf("A exited %d; stderr:\n%s", code, a.stderr)
	}
	exited := time.Since(signalled)
	if closing < drainDelay {
		t.Errorf("A closed its listeners %v after SIGTERM, before the drain delay of %v", closing, drainDelay)
	}
	m := regexp.MustCompile(`msg=stopped accepted=(\d+) open=0 errors=(\d+)`).FindStringSubmatch(a.stderr.String())
	if m == nil {
		t.Fatalf("A logged no final counts with nothing open; stderr:\n%s", a.stderr)
	}
	servedA, _ := strconv.Atoi(m[1])
	if m[2] != "0" {
		t.Errorf("A counted %s connection errors", m[2])
	}

	// B alone, for a while.
	after := ok.Load()
	waitCount(t, &ok, after+500, "requests through B alone")
	close(stop)
	wg.Wait()
	if err := <-benchErr; err != nil {
		t.Errorf("redis-benchmark: %v", err)
	}
	servedB := series(scrapeMetrics(t, adminB), "tunnel_connections_total", "route", "redis")
	b.cmd.Process.Signal(syscall.SIGTERM)
	if code := b.exitCode(t); code != 0 {
		t.Fatalf("B exited %d; stderr:\n%s", code, b.stderr)
	}
	t.Logf("swap: %d requests ok, %d failed; redis-benchmark %d runs, %d requests; A served %d connections, B %.0f; /readyz 503 after %v, listeners closed after %v, A exited after %v",
		ok.Load(), failed.Load(), benchRuns.Load(), benchRequests.Load(), servedA, servedB, notReady.Round(time.Millisecond), closing.Round(time.Millisecond), exited.Round(time.Millisecond))
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed across the swap, e.g. %q", n, errs)
	}
	if servedA == 0 || servedB == 0 {
		t.Errorf("A served %d connections, B %.0f: want both", servedA, servedB)
	}
}

// ping connects to addr, sends a Redis PING and reads +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("got %q", line)
	}
	return nil
}

// redisBenchmark runs redis-benchmark against addr, a new connection for
// every request (-k 0), again and again until stop (which kills the run in
// progress: its output so far is checked) or the deadline, and returns the
// first run that failed or printed an error.
func redisBenchmark(addr string, stop <-chan struct{}, deadline time.Time, runs, requests *atomic.Int64) error {
	host, port, _ := net.SplitHostPort(addr)
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		default:
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		stopped := make(chan struct{})
		go func() {
			select {
			case <-stop:
				close(stopped) // before the kill that it explains
				cancel()
			case <-ctx.Done():
			}
		}()
		out, err := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-c", "4", "-n", "2000", "-k", "0", "-t", "ping", "-q").CombinedOutput()
		cancel()
		if lower := bytes.ToLower(out); bytes.Contains(lower, []byte("error")) || bytes.Contains(lower, []byte("could not connect")) {
			return fmt.Errorf("%v: %s", err, out)
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && !exit.Exited() {
			select {
			case <-stopped:
				return nil // killed at stop
			default:
			}
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		runs.Add(1)
		requests.Add(2 * 2000) // PING_INLINE and PING_MBULK
	}
	return nil
}

// waitCount waits until n reaches want, bounded by cliTimeout.
func waitCount(t *testing.T, n *atomic.Int64, want int64, what string) {
	t.Helper()
	start := time.Now()
	for n.Load() < want {
		if time.Since(start) > cliTimeout {
			t.Fatalf("%s: %d after %v, want %d", what, n.Load(), cliTimeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startRedis runs redis-server on a free loopback port until the test
// ends and returns its address once it answers.
func startRedis(t *testing.T) string {
	t.Helper()
	addr := testkit.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "10000")
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for start := time.Now(); ping(addr) != nil; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > cliTimeout {
			t.Fatalf("redis-server does not answer on %s", addr)
		}
	}
	return addr
}
