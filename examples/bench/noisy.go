//go:build linux

package main

// The noisy-neighbour part (-noisy): what a plugin that computes without
// end on one route costs the other routes of the same tunnel process.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// noisyBound is the fraction of its request rate with the spinning route
// idle that each other route must keep while it spins (issue: CPU
// isolation).
const noisyBound = 0.8

// noisyResult is the noisy-neighbour figure: route by route, the GET rate
// of redis-benchmark with route B idle and with B's plugin spinning, in
// the same rounds.
type noisyResult struct {
	How    string                 `json:"method"`
	Routes map[string]*noisyRoute `json:"routes"` // "tunnel" (no plugin), "tunnel-noop"
	Reason string                 `json:"not_available,omitempty"`
	Error  string                 `json:"error,omitempty"`
}

// noisyRoute is one route's figures.
type noisyRoute struct {
	IdleRPS []float64 `json:"idle_rps"` // per round, B idle
	SpinRPS []float64 `json:"spin_rps"` // per round, B spinning
	Ratios  []float64 `json:"ratios"`   // SpinRPS / IdleRPS per round
	Ratio   float64   `json:"ratio"`    // median of Ratios
	SpinP99 []float64 `json:"spin_p99_ms"`
}

// noisyRoutes are the measured routes, in report order.
var noisyRoutes = []string{"tunnel", "tunnel-noop"}

// runNoisy starts one tunnel with three routes to the redis backend: A
// with no plugin, A2 with the no-op plugin, B with
// cmd/tunnel/testdata/hostile/spin.wasm (call_timeout 1s, the breaker off,
// default instances). Each round runs redis-benchmark -t get -c 10 on A
// and A2 with B idle, then again while 4 clients connect to B one after
// the other (each call spins until it is cut off).
func (b *bench) runNoisy(ctx context.Context, rounds int, stdout io.Writer) *noisyResult {
	res := &noisyResult{Routes: map[string]*noisyRoute{}}
	redis := b.backends[backRedis]
	spin := filepath.Join(b.root, "cmd", "tunnel", "testdata", "hostile", "spin.wasm")
	n := 2000
	if !b.smoke && b.redisN[50] > 0 {
		n = b.redisN[50]
	}
	res.How = fmt.Sprintf("one tunnel, three routes to redis-server: A (no plugin, 'tunnel'), A2 (the no-op plugin, 'tunnel-noop'), "+
		"B (cmd/tunnel/testdata/hostile/spin.wasm: tunnel_on_data loops until call_timeout = 1s cuts it off; trip_failures = 0, instances = GOMAXPROCS). "+
		"Each of %d round(s): redis-benchmark -t get -c 10 -n %d on A, then A2, with B idle; then the same while 4 clients connect to B again and again. "+
		"Ratio = rate with B spinning / rate with B idle, same round; the figure is the median ratio (want >= %.1f)", rounds, n, noisyBound)
	switch {
	case redis == "" || b.bin["redis-benchmark"] == "":
		res.Reason = "redis-server or redis-benchmark is not installed"
	case b.noopWasm == "":
		res.Reason = "no no-op plugin: " + b.noopWhy
	case !b.tunnelPlugins:
		res.Reason = "this tunnel binary has no --plugin flag"
	}
	if _, err := os.Stat(spin); err != nil && res.Reason == "" {
		res.Reason = fmt.Sprintf("the spinning guest: %v", err)
	}
	if res.Reason != "" {
		return res
	}
	ports := make([]int, 3)
	for i := range ports {
		p, err := b.ports.next()
		if err != nil {
			res.Error = err.Error()
			return res
		}
		ports[i] = p
	}
	cfg := fmt.Sprintf(`plugin "noop" {
  path = %q
}
plugin "spin" {
  path          = %q
  call_timeout  = "1s"
  trip_failures = 0
}
route "a" {
  listen = "127.0.0.1:%d"
  target = %q
  dump { enabled = false }
}
route "a2" {
  listen = "127.0.0.1:%d"
  target = %q
  dump { enabled = false }
  chain {
    plugin = plugin.noop
  }
}
route "b" {
  listen = "127.0.0.1:%d"
  target = %q
  dump { enabled = false }
  chain {
    plugin = plugin.spin
  }
}
`, b.noopWasm, spin, ports[0], redis, ports[1], redis, ports[2], redis)
	path := filepath.Join(b.tmp, "noisy.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		res.Error = err.Error()
		return res
	}
	argv := []string{b.tunnelBin, "--config", path, "--log-level", "error", "--grace", "1s", "--cache-dir", filepath.Join(b.tmp, "wazero-cache")}
	p, err := b.procs.start("tunnel-noisy", argv, startOpts{pidns: true})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer b.procs.remove(p, 3*time.Second)
	for _, port := range ports {
		if err := waitListening(ctx, p, port, 60*time.Second); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	get := func(a string) (float64, float64, error) {
		host, port, _ := net.SplitHostPort(a)
		argv := []string{b.bin["redis-benchmark"], "-h", host, "-p", port, "-t", "get", "-c", "10", "-n", strconv.Itoa(n), "--csv"}
		out, err := b.procs.run(ctx, "redis-benchmark", argv, 120*time.Second, 64<<10)
		if err != nil {
			return 0, 0, err
		}
		r, err := parseRedisCSV(out)
		if err != nil {
			return 0, 0, err
		}
		g, ok := r["GET"]
		if !ok {
			return 0, 0, fmt.Errorf("redis-benchmark: no GET result in %q", truncate(string(out), 300))
		}
		return g.RPS, g.P99, nil
	}
	for _, name := range noisyRoutes {
		res.Routes[name] = &noisyRoute{}
	}
	for round := range rounds {
		idle := map[string]float64{}
		for i, name := range noisyRoutes {
			rps, _, err := get(addr(i))
			if err != nil {
				res.Error = fmt.Sprintf("round %d, %s, B idle: %v", round+1, name, err)
				return res
			}
			idle[name] = rps
		}
		stop := spinClients(addr(2), 4)
		time.Sleep(200 * time.Millisecond) // the first calls are spinning
		for i, name := range noisyRoutes {
			rps, p99, err := get(addr(i))
			if err != nil {
				stop()
				res.Error = fmt.Sprintf("round %d, %s, B spinning: %v", round+1, name, err)
				return res
			}
			r := res.Routes[name]
			r.IdleRPS = append(r.IdleRPS, idle[name])
			r.SpinRPS = append(r.SpinRPS, rps)
			r.Ratios = append(r.Ratios, rps/idle[name])
			r.SpinP99 = append(r.SpinP99, p99)
			fmt.Fprintf(stdout, "  noisy round %d: %-12s GET %.0f req/s with B idle, %.0f with B spinning (%.2f×, p99 %.2f ms)\n",
				round+1, name, idle[name], rps, rps/idle[name], p99)
		}
		stop()
		if err := ctx.Err(); err != nil {
			res.Error = context.Cause(ctx).Error()
			return res
		}
	}
	for _, r := range res.Routes {
		r.Ratio = median(r.Ratios)
	}
	return res
}

// spinClients runs clients on addr, each sending a line and waiting for
// the tunnel to close the connection, again and again, until the returned
// stop is called; stop waits for the connections to end (at most the
// spinning call's time limit).
func spinClients(addr string, clients int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte("PING\r\n"))
				io.Copy(io.Discard, c)
				c.Close()
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// goals: each route keeps noisyBound of its rate while B spins.
func (r *noisyResult) goals() []goal {
	var gs []goal
	for _, name := range noisyRoutes {
		g := goal{What: fmt.Sprintf("noisy neighbour: %s GET rate, B spinning / B idle", name), Want: fmt.Sprintf(">= %.1f×", noisyBound)}
		route := r.Routes[name]
		if r.Reason != "" || r.Error != "" || route == nil || len(route.Ratios) == 0 {
			g.Absent, g.Got = true, "not measured"
		} else {
			g.Value, g.Met = route.Ratio, route.Ratio >= noisyBound
			g.Got = fmt.Sprintf("%.2f×", route.Ratio)
		}
		gs = append(gs, g)
	}
	return gs
}

// writeNoisyMarkdown writes the figure as a Markdown table.
func writeNoisyMarkdown(w io.Writer, r *noisyResult) {
	fmt.Fprintf(w, "\nNoisy neighbour: %s.\n\n", r.How)
	if r.Reason != "" || r.Error != "" {
		fmt.Fprintf(w, "Not measured: %s%s\n", r.Reason, r.Error)
		return
	}
	fmt.Fprintln(w, "| route | GET req/s, B idle (median) | GET req/s, B spinning (median) | ratio (median of rounds) | rounds' ratios |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	for _, name := range noisyRoutes {
		route := r.Routes[name]
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.2f× | %.2f |\n", name, median(route.IdleRPS), median(route.SpinRPS), route.Ratio, route.Ratios)
	}
}
