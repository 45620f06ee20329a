//go:build linux

package main

// The loads: iperf3 (bulk throughput), redis-benchmark (request rate and
// latency), a connection-rate generator and the idle-connection test.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// test is one load, run against every target in every round.
type test struct {
	key     string // prefix of its metric keys
	backend string
	label   string
	// run measures through addr; it returns the metric values (keys without
	// the test prefix) and the amount of work done for the CPU figure.
	run func(ctx context.Context, b *bench, addr string) (vals map[string]float64, work float64, err error)
	// cpuKey/cpuScale name the CPU figure: CPU seconds / work * cpuScale.
	cpuKey   string
	cpuScale float64
	profile  int // seconds of CPU profile to take in round 1 (tunnel targets, with -pprof-dir)
}

func (b *bench) tests() []test {
	var ts []test
	bulk := func(streams int) test {
		return test{key: fmt.Sprintf("bulk%d", streams), backend: backIperf, label: fmt.Sprintf("iperf3, %d stream(s)", streams),
			run: func(ctx context.Context, b *bench, addr string) (map[string]float64, float64, error) {
				return b.iperf(ctx, addr, streams)
			},
			cpuKey: "cpu_s_per_gib", cpuScale: 1, profile: max(1, int(b.bulkTime.Seconds())-1)}
	}
	redis := func(clients int) test {
		return test{key: fmt.Sprintf("redis%d", clients), backend: backRedis, label: fmt.Sprintf("redis-benchmark -t set,get -c %d", clients),
			run: func(ctx context.Context, b *bench, addr string) (map[string]float64, float64, error) {
				return b.redis(ctx, addr, clients)
			},
			cpuKey: "cpu_us_per_req", cpuScale: 1e6, profile: 2}
	}
	conns := func(conc int) test {
		return test{key: fmt.Sprintf("conn%d", conc), backend: backEcho, label: fmt.Sprintf("connect, 32-byte echo, close; %d at a time", conc),
			run: func(ctx context.Context, b *bench, addr string) (map[string]float64, float64, error) {
				r, err := connRate(ctx, addr, conc, b.connTime)
				if err != nil {
					return nil, 0, err
				}
				return map[string]float64{"per_s": r.perSec, "p50_ms": r.p50, "p99_ms": r.p99}, float64(r.n), nil
			},
			cpuKey: "cpu_us_per_conn", cpuScale: 1e6, profile: max(1, int(b.connTime.Seconds())-1)}
	}
	ts = append(ts, bulk(1), bulk(8), redis(1), redis(50), conns(1), conns(16))
	return ts
}

// iperf runs one iperf3 client through addr.
func (b *bench) iperf(ctx context.Context, addr string, streams int) (map[string]float64, float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	secs := strconv.Itoa(max(1, int(b.bulkTime.Round(time.Second).Seconds())))
	argv := []string{b.bin["iperf3"], "-c", host, "-p", port, "-t", secs, "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "5000"}
	out, err := b.procs.run(ctx, "iperf3", argv, b.bulkTime+30*time.Second, 4<<20)
	if err != nil {
		if _, perr := parseIperf3(out); perr != nil && len(out) > 0 {
			return nil, 0, perr // iperf3's own message, from its JSON
		}
		return nil, 0, err
	}
	r, err := parseIperf3(out)
	if err != nil {
		return nil, 0, err
	}
	return map[string]float64{"gbit_s": r.BitsPerSecond / 1e9}, float64(r.Bytes) / (1 << 30), nil
}

// redis runs redis-benchmark (SET then GET) through addr with b.redisN
// requests per test.
func (b *bench) redis(ctx context.Context, addr string, clients int) (map[string]float64, float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	n := b.redisN[clients]
	argv := []string{b.bin["redis-benchmark"], "-h", host, "-p", port, "-t", "set,get", "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n), "--csv"}
	out, err := b.procs.run(ctx, "redis-benchmark", argv, 120*time.Second, 64<<10)
	if err != nil {
		return nil, 0, err
	}
	res, err := parseRedisCSV(out)
	if err != nil {
		return nil, 0, err
	}
	vals := map[string]float64{}
	for _, name := range []string{"SET", "GET"} {
		r, ok := res[name]
		if !ok {
			return nil, 0, fmt.Errorf("redis-benchmark: no %s result in %q", name, truncate(string(out), 300))
		}
		k := map[string]string{"SET": "set", "GET": "get"}[name]
		vals[k+"_rps"] = r.RPS
		vals[k+"_p50_ms"] = r.P50
		vals[k+"_p99_ms"] = r.P99
	}
	return vals, float64(2 * n), nil
}

// calibrateRedis picks the request count of each redis test so that the
// direct connection takes about b.redisTime: every target then does the
// same work.
func (b *bench) calibrateRedis(ctx context.Context, addr string) error {
	b.redisN = map[int]int{}
	for _, clients := range []int{1, 50} {
		b.redisN[clients] = 2000
		if b.smoke {
			continue
		}
		vals, _, err := b.redis(ctx, addr, clients)
		if err != nil {
			return fmt.Errorf("calibrating redis-benchmark: %w", err)
		}
		rps := math.Min(vals["set_rps"], vals["get_rps"])
		b.redisN[clients] = int(min(2e6, max(1000, rps*b.redisTime.Seconds())))
	}
	return nil
}

// connResult is what connRate measured.
type connResult struct {
	n        int     // completed connections
	perSec   float64 // completed connections per second
	p50, p99 float64 // milliseconds, from dial to the server's close
}

// connRate opens connections to addr, conc at a time, for dur: each sends
// a 32-byte request, reads the echo and waits for the server's close.
// Any failed connection fails the test (a forwarder must not lose any).
func connRate(ctx context.Context, addr string, conc int, dur time.Duration) (connResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline := time.Now().Add(dur)
	lat := make([][]float64, conc)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var req, resp [echoMsg]byte
			copy(req[:], "tunnel-bench connection-rate...")
			d := net.Dialer{Timeout: 5 * time.Second}
			lat[w] = make([]float64, 0, 4096)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				err := func() error {
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(req[:]); err != nil {
						return fmt.Errorf("write: %w", err)
					}
					if _, err := io.ReadFull(c, resp[:]); err != nil {
						return fmt.Errorf("read the echo: %w", err)
					}
					if resp != req {
						return fmt.Errorf("echo differs: %q", resp[:])
					}
					var one [1]byte
					if n, err := c.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
						return fmt.Errorf("want EOF after the echo, got %d bytes, %v", n, err)
					}
					return nil
				}()
				if err != nil {
					cancel(fmt.Errorf("connection %d via %s: %w", len(lat[w])+1, addr, err))
					return
				}
				lat[w] = append(lat[w], float64(time.Since(t0))/1e6)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return connResult{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return connResult{}, errors.New("no connection completed")
	}
	slices.Sort(all)
	return connResult{n: len(all), perSec: float64(len(all)) / elapsed.Seconds(), p50: percentile(all, 50), p99: percentile(all, 99)}, nil
}

// measure runs one test through one target and adds the CPU and memory
// figures of the forwarder process.
func (b *bench) measure(ctx context.Context, tt test, t *target, f *fwd, round int) (map[string]float64, error) {
	pid := f.pid()
	var cpu0 float64
	var sampler *rssSampler
	if pid != 0 {
		if f.proc.exited() {
			return nil, fmt.Errorf("forwarder %s exited: %s", f.proc.name, f.proc.describeExit())
		}
		var err error
		if cpu0, err = treeCPUSeconds(pid); err != nil {
			return nil, err
		}
		sampler = sampleRSS(pid, 100*time.Millisecond)
	}
	var prof chan error
	if round == 0 && b.pprofDir != "" && f.pprofAddr != "" && tt.profile > 0 {
		prof = make(chan error, 1)
		go func() {
			prof <- fetchProfile(ctx, f.pprofAddr, tt.profile, filepath.Join(b.pprofDir, fmt.Sprintf("%s-%s.pprof", t.Name, tt.key)))
		}()
	}
	vals, work, err := tt.run(ctx, b, f.addr)
	if prof != nil {
		if perr := <-prof; perr != nil {
			fmt.Fprintf(b.log, "    (profile of %s %s: %v)\n", t.Name, tt.key, perr)
		}
	}
	if pid == 0 {
		return vals, err
	}
	peak := sampler.end()
	if err != nil {
		if f.proc.exited() {
			err = fmt.Errorf("%w; the forwarder exited: %s", err, f.proc.describeExit())
		}
		return nil, err
	}
	cpu1, cerr := treeCPUSeconds(pid)
	if cerr != nil {
		return nil, cerr
	}
	if work > 0 {
		vals[tt.cpuKey] = (cpu1 - cpu0) / work * tt.cpuScale
	}
	peak = max(peak, treeMemKB(pid, "VmHWM"))
	vals["rss_mib"] = float64(peak) / 1024
	return vals, nil
}

// fetchProfile saves a CPU profile of secs seconds from a pprof server.
func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+10)*time.Second)
	defer cancel()
	return fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path)
}

// fetch saves the body of an HTTP GET of url to path.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, truncate(string(bytes.TrimSpace(body)), 200))
	}
	return os.WriteFile(path, body, 0o644)
}

// idleResult is the memory of one forwarder holding many idle connections.
type idleResult struct {
	Target      string  `json:"target"`
	Want        int     `json:"connections_wanted"`
	Conns       int     `json:"connections"`
	LimitedBy   string  `json:"limited_by,omitempty"`
	BaseMiB     float64 `json:"rss_before_mib"`
	RSSMiB      float64 `json:"rss_mib"`
	HWMMiB      float64 `json:"peak_rss_mib"`
	KiBPerConn  float64 `json:"kib_per_conn"`
	ProjMiB     float64 `json:"projected_rss_mib,omitempty"`       // at Want connections, when fewer fit
	AfterGCMiB  float64 `json:"rss_after_forced_gc_mib,omitempty"` // with -pprof-dir, for the tunnel
	FDs         int     `json:"fds"`
	FDsPerConn  float64 `json:"fds_per_conn"`
	OpenSeconds float64 `json:"open_seconds"`
	Error       string  `json:"error,omitempty"`
}

// rssAt is the measured VmRSS, or the projection to Want connections when
// fewer fitted in the descriptor limit.
func (r idleResult) rssAt() float64 {
	if r.ProjMiB > 0 {
		return r.ProjMiB
	}
	return r.RSSMiB
}

// idle starts a fresh forwarder of t in front of the echo-everything
// backend, opens want connections through it (each carries one 32-byte
// echo both ways, so every plugin has seen it open and pass data), waits one
// second and reads the forwarder's VmRSS from /proc/PID/status (summed over
// its process tree). Then it checks a sample of the connections still echo
// and closes them all. When RLIMIT_NOFILE cannot hold want connections in
// the forwarder, it opens as many as fit (measuring the descriptors each
// one costs on the first 100) and projects the memory linearly.
func (b *bench) idle(ctx context.Context, t *target, want int, backend string) idleResult {
	res := idleResult{Target: t.Name, Want: want}
	fail := func(err error) idleResult {
		res.Error = err.Error()
		return res
	}
	f, err := b.startForwarder(ctx, t, "idle", backend)
	if err != nil {
		return fail(err)
	}
	defer b.procs.remove(f.proc, 3*time.Second)
	pid := f.pid()
	fds := func() (sum, most int) {
		for _, p := range procTree(pid) {
			n := max(0, openFDs(p))
			sum += n
			most = max(most, n)
		}
		return sum, most
	}
	fds0, most0 := fds()
	res.BaseMiB = float64(treeMemKB(pid, "VmRSS")) / 1024

	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	conns := make([]net.Conn, 0, want)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	probe := min(want, 100)
	more, err := openIdle(ctx, f.addr, probe)
	conns = append(conns, more...)
	if err != nil {
		return fail(err)
	}
	fds1, _ := fds()
	res.FDsPerConn = float64(fds1-fds0) / float64(probe)
	n := want
	if res.FDsPerConn > 0 {
		if fit := int((float64(b.nofile) - float64(most0) - 256) / res.FDsPerConn); fit < want {
			n = fit
			res.LimitedBy = fmt.Sprintf("RLIMIT_NOFILE %d (cannot be raised here) at %.1f descriptors per connection", b.nofile, res.FDsPerConn)
		}
	}
	more, err = openIdle(ctx, f.addr, n-probe)
	conns = append(conns, more...)
	res.OpenSeconds = time.Since(start).Seconds()
	res.Conns = len(conns)
	if err != nil {
		return fail(err)
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if f.proc.exited() {
		return fail(fmt.Errorf("forwarder exited: %s", f.proc.describeExit()))
	}
	res.RSSMiB = float64(treeMemKB(pid, "VmRSS")) / 1024
	res.HWMMiB = float64(treeMemKB(pid, "VmHWM")) / 1024
	res.FDs, _ = fds()
	res.KiBPerConn = (res.RSSMiB - res.BaseMiB) * 1024 / float64(res.Conns)
	if res.Conns < want {
		res.ProjMiB = res.BaseMiB + res.KiBPerConn*float64(want)/1024
	}
	if b.pprofDir != "" && f.pprofAddr != "" {
		// Where the memory is: the Go runtime's MemStats as measured, then
		// after a forced GC (which shrinks grown goroutine stacks).
		for _, q := range []string{"debug=1", "debug=1&gc=1"} {
			path := filepath.Join(b.pprofDir, fmt.Sprintf("%s-idle-heap-%s.txt", t.Name, strings.ReplaceAll(q, "&", "-")))
			if err := fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/heap?%s", f.pprofAddr, q), path); err != nil {
				fmt.Fprintf(b.log, "    (heap profile of %s: %v)\n", t.Name, err)
			}
		}
		res.AfterGCMiB = float64(treeMemKB(pid, "VmRSS")) / 1024
	}
	// The connections still work after sitting idle.
	var msg, got [echoMsg]byte
	copy(msg[:], "tunnel-bench idle, still alive?")
	for i := 0; i < len(conns); i += max(1, len(conns)/100) {
		c := conns[i]
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg[:]); err != nil {
			return fail(fmt.Errorf("idle connection %d: write: %w", i+1, err))
		}
		if _, err := io.ReadFull(c, got[:]); err != nil || got != msg {
			return fail(fmt.Errorf("idle connection %d: echo after idling: %q, %v", i+1, got[:], err))
		}
	}
	return res
}

// openIdle opens n connections to addr, 32 at a time; each carries one
// 32-byte echo. It returns the connections opened, also on error.
func openIdle(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	if n <= 0 {
		return nil, nil
	}
	conns := make([]net.Conn, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second}
			var msg, got [echoMsg]byte
			copy(msg[:], "tunnel-bench idle connection...")
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					conns[i] = c
					c.SetDeadline(time.Now().Add(20 * time.Second))
					if _, err = c.Write(msg[:]); err == nil {
						if _, err = io.ReadFull(c, got[:]); err == nil {
							err = c.SetDeadline(time.Time{})
						} else {
							err = fmt.Errorf("echo: %w", err)
						}
					}
				}
				if err != nil {
					cancel(fmt.Errorf("idle connection %d: %w", i+1, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	opened := conns[:0]
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	return opened, context.Cause(ctx)
}
