//go:build linux

// Command bench measures the tunnel against a direct connection and against
// socat, haproxy and nginx, on loopback, and prints the medians of several
// rounds as a table (and writes them as JSON).
//
//	go run ./examples/bench            # full run: installs missing tools, 3 rounds (~12 min)
//	go run ./examples/bench -smoke     # end-to-end check in a few seconds, for CI
//
// Loads: iperf3 bulk throughput (1 and 8 streams), redis-benchmark SET/GET
// request rate and latency (1 and 50 clients), new connections per second
// (a built-in generator: connect, 32-byte echo, close; 1 and 16 at a time),
// and the memory of 10,000 idle connections. For every forwarder it reads
// the CPU seconds and peak RSS of its process tree from /proc. Linux only.
// Every process it starts runs in its own process group and is stopped by
// its group id on exit, on error and on Ctrl-C. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// bench is one run of the benchmark.
type bench struct {
	log   io.Writer
	procs *procs
	ports ports
	tmp   string
	root  string // module root
	smoke bool

	bin         map[string]string // tool name -> path, "" when missing
	backends    map[string]string // backend name -> address
	echoes      []*echoServer
	bulkTime    time.Duration
	redisTime   time.Duration
	connTime    time.Duration
	redisN      map[int]int // requests per redis test, by client count
	pprofDir    string
	tunnelFlags []string
	nofile      uint64 // RLIMIT_NOFILE in force (inherited by every process started)

	tunnelBin, noopWasm, noopWatWasm, replaceWasm string
	noopDesc, noopWhy, replaceWhy, replaceConfig  string
	tunnelPlugins                                 bool
}

func main() {
	if os.Getenv(echoChildEnv) == "1" {
		os.Exit(echoChild())
	}
	if spec := os.Getenv(naiveChildEnv); spec != "" {
		os.Exit(naiveChild(spec))
	}
	ps := &procs{}
	ctx, cancel := context.WithCancelCause(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping (again to force)\n", s)
		cancel(fmt.Errorf("interrupted by %v", s))
		select {
		case <-sig:
		case <-time.After(20 * time.Second):
		}
		ps.stopAll()
		os.Exit(130)
	}()
	code := run(ctx, ps, os.Args[1:], os.Stdout, os.Stderr)
	ps.stopAll()
	os.Exit(code)
}

// run is the whole command; it returns the exit status. The caller stops
// the processes left in ps.
func run(ctx context.Context, ps *procs, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		smoke       = fs.Bool("smoke", false, "tiny loads, one round, only the targets that can run: checks the command end to end (CI)")
		rounds      = fs.Int("rounds", 3, "rounds; every target runs every test once per round, in rotated order")
		bulkTime    = fs.Duration("bulk-time", 4*time.Second, "duration of each iperf3 run (whole seconds)")
		redisTime   = fs.Duration("redis-time", 2*time.Second, "the redis request count is set so a direct run takes about this long")
		connTime    = fs.Duration("conn-time", 3*time.Second, "duration of each connection-rate run")
		idleConns   = fs.Int("idle-conns", 10000, "idle connections held open through each -idle-targets target (0: skip)")
		idleTargets = fs.String("idle-targets", "tunnel-noop,tunnel,nginx,haproxy", "targets of the idle-connection test, comma-separated")
		testList    = fs.String("tests", "", "tests to run, comma-separated (default: all of bulk1,bulk8,redis1,redis50,conn1,conn16)")
		targetList  = fs.String("targets", "", "targets to run, comma-separated (default: all of direct,socat,haproxy,nginx,naive,tunnel,tunnel-capture,tunnel-admin,tunnel-accesslog,tunnel-resp,tunnel-noop,tunnel-noop-wat,tunnel-replace)")
		installMode = fs.String("install", "auto", "install missing tools with apt-get: yes, no, or auto (yes, except with -smoke)")
		jsonPath    = fs.String("json", "bench-results.json", "write the results here as JSON (empty: do not)")
		mdPath      = fs.String("markdown", "", "also write the results table as Markdown to this file")
		root        = fs.String("root", "", "the tunnel module's root directory (default: found from the working directory)")
		tunnelBin   = fs.String("tunnel-bin", "", "use this tunnel binary instead of building ./cmd/tunnel")
		noopWasm    = fs.String("noop-wasm", "", "use this no-op plugin instead of building ./plugins/noop")
		replaceWasm = fs.String("replace-wasm", "", "use this replace plugin instead of building ./plugins/replace")
		replaceCfg  = fs.String("replace-config", `{"from":"tunnel-bench-needle","to":"TUNNEL-BENCH-NEEDLE"}`, "--plugin-config of the replace plugin (a pattern the loads never contain: the cost of scanning)")
		tunnelFlags = fs.String("tunnel-flags", "", "extra flags for every tunnel target, space-separated (e.g. --plugin-trusted)")
		pprofDir    = fs.String("pprof-dir", "", "save CPU profiles of the tunnel targets taken during round 1 in this directory (adds --pprof to the tunnel)")
		tlsPart     = fs.Bool("tls", true, "also measure TLS: the tunnel terminating it against haproxy and nginx, and passing it through spliced and by SNI")
		noisyPart   = fs.Bool("noisy", true, "also measure the noisy neighbour: two routes' redis request rate with a third route's plugin idle and spinning (noisy.go)")
		keep        = fs.Bool("keep", false, "keep the temporary directory (configs, binaries)")
		verbose     = fs.Bool("v", false, "log every process started")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./examples/bench [flags]\n\nMeasures the tunnel against direct, socat, haproxy and nginx on loopback (Linux). Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *smoke {
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("rounds", func() { *rounds = 1 })
		def("bulk-time", func() { *bulkTime = time.Second })
		// Long enough for a hundred or so connections through the
		// slowest target (socat, about 1,000 a second), which is all a
		// positive figure needs.
		def("conn-time", func() { *connTime = 100 * time.Millisecond })
		def("idle-conns", func() { *idleConns = 200 })
		def("idle-targets", func() { *idleTargets = "tunnel-noop,tunnel" })
		def("json", func() { *jsonPath = "" })
	}
	if *rounds < 1 || *bulkTime < time.Second || *connTime <= 0 || *redisTime <= 0 || *idleConns < 0 {
		fmt.Fprintln(stderr, "bench: -rounds must be >= 1, -bulk-time >= 1s, other durations > 0, -idle-conns >= 0")
		return 2
	}
	doInstall := *installMode == "yes" || (*installMode == "auto" && !*smoke)
	if *installMode != "yes" && *installMode != "no" && *installMode != "auto" {
		fmt.Fprintf(stderr, "bench: -install %q: want yes, no or auto\n", *installMode)
		return 2
	}

	b := &bench{log: stdout, procs: ps, smoke: *smoke, bulkTime: *bulkTime, redisTime: *redisTime, connTime: *connTime,
		tunnelBin: *tunnelBin, noopWasm: *noopWasm, replaceWasm: *replaceWasm, replaceConfig: *replaceCfg, pprofDir: *pprofDir,
		tunnelFlags: strings.Fields(*tunnelFlags)}
	if *verbose {
		ps.verbose = stdout
	}
	defer func() {
		for _, e := range b.echoes {
			e.close()
		}
	}()
	rep := &report{Started: time.Now().UTC().Format(time.RFC3339), Mode: "full", Machine: describeMachine(),
		Load: map[string]string{}, Busy: map[string]busy{}, Metrics: metrics, Errors: []string{}}
	if *smoke {
		rep.Mode = "smoke"
	}
	start := time.Now()
	fatal := func(err error) int {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}

	// Where and how busy.
	m := rep.Machine
	fmt.Fprintf(stdout, "machine: %d CPUs, %s, Linux %s, %s, %s\n", m.NProc, m.CPUModel, m.Kernel, m.MemTotal, m.Go)
	rep.Load["start"] = loadavg()
	cpuA, err := readCPUTimes()
	if err != nil {
		return fatal(err)
	}
	quiet := 1 * time.Second
	if *smoke {
		quiet = 200 * time.Millisecond
	}
	select {
	case <-time.After(quiet):
	case <-ctx.Done():
		return fatal(context.Cause(ctx))
	}
	cpuB, _ := readCPUTimes()
	rep.Busy["before"] = busyBetween(cpuA, cpuB)
	fmt.Fprintf(stdout, "before: loadavg %s; CPU over %v: %.1f%% busy, %.1f%% idle, %.1f%% steal\n",
		rep.Load["start"], quiet, rep.Busy["before"].BusyPct, rep.Busy["before"].IdlePct, rep.Busy["before"].StealPct)

	want := uint64(6*(*idleConns) + 4096)
	nofile, err := raiseNoFile(max(want, 65536))
	if err != nil {
		fmt.Fprintf(stdout, "warning: %v\n", err)
	}
	b.nofile = nofile
	if need := uint64(2*(*idleConns) + 64); *idleConns > 0 && nofile < need {
		fmt.Fprintf(stdout, "warning: RLIMIT_NOFILE is %d and cannot be raised here: a forwarder needs 2 descriptors or more per connection, "+
			"so the idle test opens as many connections as fit and projects the memory to %d\n", nofile, *idleConns)
	}

	// Tools.
	if doInstall {
		if pkgs := missingPackages(); len(pkgs) > 0 {
			if err := install(ctx, pkgs, stdout); err != nil {
				fmt.Fprintf(stdout, "warning: could not install %s: %v\n", strings.Join(pkgs, " "), err)
			}
		}
	}
	b.bin = map[string]string{}
	for _, t := range tools {
		if p, err := exec.LookPath(t.bin); err == nil {
			b.bin[t.bin] = p
		} else {
			pkgs := t.pkgs
			if t.bin == "nginx" {
				pkgs = []string{"nginx-light", "libnginx-mod-stream"}
			}
			fmt.Fprintf(stdout, "%s: not installed (apt-get install %s)\n", t.bin, strings.Join(pkgs, " "))
		}
	}

	// Build.
	b.root = *root
	if b.root == "" {
		if b.root, err = findModuleRoot(); err != nil {
			return fatal(err)
		}
	}
	if b.tmp, err = os.MkdirTemp("", "tunnel-bench-"); err != nil {
		return fatal(err)
	}
	if *keep {
		fmt.Fprintf(stdout, "keeping %s\n", b.tmp)
	} else {
		defer os.RemoveAll(b.tmp)
	}
	if b.pprofDir != "" {
		if err := os.MkdirAll(b.pprofDir, 0o755); err != nil {
			return fatal(err)
		}
	}
	fmt.Fprintln(stdout, "building the tunnel and its plugins...")
	if err := b.build(ctx); err != nil {
		return fatal(err)
	}

	// Targets.
	all := b.newTargets()
	ts := all
	if *targetList != "" {
		ts = nil
		for _, name := range strings.Split(*targetList, ",") {
			i := slices.IndexFunc(all, func(t *target) bool { return t.Name == strings.TrimSpace(name) })
			if i < 0 {
				fmt.Fprintf(stderr, "bench: -targets: unknown target %q\n", name)
				return 2
			}
			ts = append(ts, all[i])
		}
		if !slices.ContainsFunc(ts, func(t *target) bool { return t.Name == "direct" }) {
			ts = append([]*target{all[0]}, ts...) // ratios need direct
		}
	}
	rep.Targets = ts
	if err := b.startBackends(ctx); err != nil {
		return fatal(err)
	}
	tests := b.tests()
	if *testList != "" {
		var chosen []test
		for _, name := range strings.Split(*testList, ",") {
			i := slices.IndexFunc(tests, func(tt test) bool { return tt.key == strings.TrimSpace(name) })
			if i < 0 {
				fmt.Fprintf(stderr, "bench: -tests: unknown test %q\n", name)
				return 2
			}
			chosen = append(chosen, tests[i])
		}
		tests = chosen
	} else if *smoke {
		// Eight streams take the same code path as one: save the time.
		tests = slices.DeleteFunc(tests, func(tt test) bool { return tt.key == "bulk8" })
	}
	var backs []string
	for _, tt := range tests {
		if !slices.Contains(backs, tt.backend) {
			backs = append(backs, tt.backend)
		}
	}
	// A target that cannot start although its tools are there is an error
	// in -smoke (that is what the smoke test is for); in a full run it is
	// reported as not available and the others are measured.
	required := map[string]bool{"direct": true, "tunnel": true}
	if *smoke {
		for _, t := range ts {
			required[t.Name] = true
		}
	}
	if err := b.startForwarders(ctx, ts, backs, required); err != nil {
		return fatal(err)
	}
	var runnable []*target
	for _, t := range ts {
		if t.available() {
			runnable = append(runnable, t)
			fmt.Fprintf(stdout, "target %-16s %s\n", t.Name, t.Desc)
		} else {
			fmt.Fprintf(stdout, "target %-16s NOT AVAILABLE: %s\n", t.Name, t.Reason)
		}
	}
	if redis := b.backends[backRedis]; redis != "" {
		if err := b.calibrateRedis(ctx, redis); err != nil {
			return fatal(err)
		}
		fmt.Fprintf(stdout, "redis-benchmark: -n %d with 1 client, -n %d with 50 clients (per test, SET and GET)\n", b.redisN[1], b.redisN[50])
	}
	rep.Settings = map[string]any{
		"rounds": *rounds, "bulk_seconds": b.bulkTime.Seconds(), "conn_seconds": b.connTime.Seconds(),
		"redis_requests": b.redisN, "idle_conns": *idleConns, "rlimit_nofile": nofile,
		"replace_config": b.replaceConfig, "pprof": b.pprofDir != "", "tunnel_flags": b.tunnelFlags,
	}

	// Rounds.
	res := results{}
	var errs []string
	for round := range *rounds {
		fmt.Fprintf(stdout, "round %d/%d\n", round+1, *rounds)
		k := round % len(runnable)
		order := append(slices.Clone(runnable[k:]), runnable[:k]...)
		for _, tt := range tests {
			if b.backends[tt.backend] == "" {
				continue
			}
			for _, t := range order {
				if err := ctx.Err(); err != nil {
					return fatal(context.Cause(ctx))
				}
				f := t.fwds[tt.backend]
				if f == nil {
					continue
				}
				vals, err := b.measure(ctx, tt, t, f, round)
				if err != nil {
					msg := fmt.Sprintf("round %d, %s, %s: %v", round+1, t.Name, tt.label, err)
					errs = append(errs, msg)
					fmt.Fprintf(stdout, "  ERROR %s\n", msg)
					continue
				}
				fmt.Fprintf(stdout, "  %-16s %-7s %s\n", t.Name, tt.key, brief(vals))
				for key, v := range vals {
					res.addRound(t.Name, tt.key+"_"+key, round, v)
				}
			}
		}
	}
	if ctx.Err() != nil {
		return fatal(context.Cause(ctx))
	}
	for _, t := range ts {
		b.stopForwarders(t)
	}

	// Idle connections.
	rep.IdleHow = fmt.Sprintf("a fresh forwarder in front of an echo backend; %d connections opened (32 at a time), each carrying one 32-byte echo "+
		"both ways; 1 s after the last one, VmRSS (and VmHWM) read from /proc/PID/status, summed over the forwarder's process tree; "+
		"kernel socket buffers are not in RSS. Then 1%% of the connections echo again to prove they are alive. When RLIMIT_NOFILE "+
		"cannot hold them all in the forwarder, as many as fit are opened and the RSS is projected linearly from the growth per connection.", *idleConns)
	if *idleConns > 0 {
		fmt.Fprintf(stdout, "idle connections: %s\n", rep.IdleHow)
		echo, addr, err := b.startIdleBackend(ctx)
		if err != nil {
			return fatal(err)
		}
		for _, name := range strings.Split(*idleTargets, ",") {
			i := slices.IndexFunc(ts, func(t *target) bool { return t.Name == strings.TrimSpace(name) })
			if i < 0 || !ts[i].available() || ts[i].launch == nil {
				continue
			}
			r := b.idle(ctx, ts[i], *idleConns, addr)
			rep.Idle = append(rep.Idle, r)
			if r.Error != "" {
				msg := fmt.Sprintf("idle connections through %s: %s", r.Target, r.Error)
				errs = append(errs, msg)
				fmt.Fprintf(stdout, "  ERROR %s\n", msg)
				continue
			}
			fmt.Fprintf(stdout, "  %-16s %d conns: VmRSS %.1f MiB (%.1f MiB before, %.1f KiB per conn), VmHWM %.1f MiB, %d fds (%.1f per conn), opened in %.1f s\n",
				r.Target, r.Conns, r.RSSMiB, r.BaseMiB, r.KiBPerConn, r.HWMMiB, r.FDs, r.FDsPerConn, r.OpenSeconds)
			if r.AfterGCMiB > 0 {
				fmt.Fprintf(stdout, "  %-16s VmRSS after a forced GC (pprof heap?gc=1): %.1f MiB; MemStats in %s\n", "", r.AfterGCMiB, b.pprofDir)
			}
			if r.LimitedBy != "" {
				fmt.Fprintf(stdout, "  %-16s only %d of %d conns fit: %s; projected VmRSS at %d: %.1f MiB\n", "", r.Conns, r.Want, r.LimitedBy, r.Want, r.ProjMiB)
			}
		}
		b.procs.remove(echo, time.Second)
		if ctx.Err() != nil {
			return fatal(context.Cause(ctx))
		}
	}

	// TLS.
	if *tlsPart {
		tlsIdle := min(*idleConns, 2000)
		fmt.Fprintf(stdout, "TLS (%d idle connections per terminating target):\n", tlsIdle)
		tlsRes, tlsErrs := b.runTLS(ctx, *rounds, tlsIdle, stdout)
		rep.TLS = tlsRes
		errs = append(errs, tlsErrs...)
		if ctx.Err() != nil {
			return fatal(context.Cause(ctx))
		}
	}

	// Noisy neighbour.
	if *noisyPart {
		fmt.Fprintln(stdout, "noisy neighbour (redis-benchmark GET rate of two routes, a third route's plugin idle vs spinning):")
		rep.Noisy = b.runNoisy(ctx, *rounds, stdout)
		if rep.Noisy.Reason != "" {
			fmt.Fprintf(stdout, "  not available: %s\n", rep.Noisy.Reason)
		}
		if rep.Noisy.Error != "" {
			msg := "noisy neighbour: " + rep.Noisy.Error
			errs = append(errs, msg)
			fmt.Fprintf(stdout, "  ERROR %s\n", msg)
		}
		if ctx.Err() != nil {
			return fatal(context.Cause(ctx))
		}
	}

	// Report.
	cpuC, _ := readCPUTimes()
	rep.Busy["run"] = busyBetween(cpuB, cpuC)
	rep.Load["end"] = loadavg()
	rep.Seconds = time.Since(start).Seconds()
	res.summarize()
	rep.Results = res
	rep.Goals = res.goals(rep.Idle, *idleConns)
	if rep.Noisy != nil {
		rep.Goals = append(rep.Goals, rep.Noisy.goals()...)
	}
	rep.Errors = append(rep.Errors, errs...)

	fmt.Fprintf(stdout, "\nmedians of %d round(s); (x×) = median / direct's median (rates: higher is better; latencies: lower is better);\n"+
		"CPU = user+system seconds of the forwarder's process tree (/proc/PID/stat) per unit of work; peak RSS = max VmHWM / sampled VmRSS of that tree\n\n", *rounds)
	writeTable(stdout, res, ts, false)
	fmt.Fprintln(stdout)
	for _, t := range ts {
		if !t.available() {
			fmt.Fprintf(stdout, "%s: not available: %s\n", t.Name, t.Reason)
		}
	}
	fmt.Fprintln(stdout, "\ngoals:")
	for _, g := range rep.Goals {
		state := "MISS"
		switch {
		case g.Absent:
			state = "n/a "
		case g.Met:
			state = "ok  "
		}
		fmt.Fprintf(stdout, "  %s %-48s want %-16s got %s\n", state, g.What, g.Want, g.Got)
	}
	fmt.Fprintf(stdout, "\nduring the run: loadavg %s at the end; CPU %.1f%% busy, %.1f%% idle, %.1f%% steal (2 cores; the loads, backends and forwarders share them)\n",
		rep.Load["end"], rep.Busy["run"].BusyPct, rep.Busy["run"].IdlePct, rep.Busy["run"].StealPct)
	fmt.Fprintf(stdout, "took %.0f s\n", rep.Seconds)
	if *jsonPath != "" {
		if err := writeJSON(*jsonPath, rep); err != nil {
			return fatal(err)
		}
		fmt.Fprintf(stdout, "results: %s\n", *jsonPath)
	}
	if *mdPath != "" {
		var sb strings.Builder
		writeMarkdown(&sb, rep, ts)
		if err := os.WriteFile(*mdPath, []byte(sb.String()), 0o644); err != nil {
			return fatal(err)
		}
	}

	if len(errs) > 0 {
		fmt.Fprintf(stderr, "bench: %d measurement(s) failed:\n  %s\n", len(errs), strings.Join(errs, "\n  "))
		return 1
	}
	if *smoke {
		return smokeCheck(res, ts, rep.Idle, stdout, stderr)
	}
	return 0
}

// smokeCheck fails unless every available target produced a positive
// figure for every test whose backend ran.
func smokeCheck(res results, ts []*target, idle []idleResult, stdout, stderr io.Writer) int {
	var bad []string
	for _, t := range ts {
		if !t.available() {
			continue
		}
		for _, key := range []string{"conn1_per_s", "conn16_per_s", "bulk1_gbit_s", "bulk8_gbit_s", "redis1_get_rps", "redis50_set_rps"} {
			f := res[t.Name][key]
			if f == nil {
				if strings.HasPrefix(key, "conn") && len(t.only) == 0 {
					bad = append(bad, fmt.Sprintf("%s: no %s", t.Name, key))
				}
				continue
			}
			if !(f.Median > 0) || math.IsInf(f.Median, 0) {
				bad = append(bad, fmt.Sprintf("%s: %s = %v", t.Name, key, f.Median))
			}
		}
	}
	for _, r := range idle {
		if r.Error != "" || r.RSSMiB <= 0 {
			bad = append(bad, fmt.Sprintf("idle %s: %+v", r.Target, r))
		}
	}
	if len(bad) > 0 {
		fmt.Fprintf(stderr, "bench -smoke: FAILED:\n  %s\n", strings.Join(bad, "\n  "))
		return 1
	}
	fmt.Fprintln(stdout, "smoke: ok")
	return 0
}

// brief formats a test's values for the progress log.
func brief(vals map[string]float64) string {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	for _, k := range keys {
		if strings.Contains(k, "set_p") {
			continue
		}
		fmt.Fprintf(&sb, "%s=%s ", k, num(vals[k]))
	}
	return strings.TrimSpace(sb.String())
}

// findModuleRoot walks up from the working directory to the go.mod of the
// tunnel module.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/tunnelwasm/tunnel") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of github.com/tunnelwasm/tunnel above %s (use -root)", dir)
		}
	}
}
