//go:build linux

package main

// Reading the machine: /proc for CPU time, memory and listening sockets;
// the file-descriptor limit; free ports; installing missing tools.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on every
// Linux architecture Go supports (the kernel converts to it for user space).
const clockTicks = 100

// procTree returns pid and all its descendants that are alive now.
func procTree(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		ppid, _, err := parseProcStat(string(data))
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], child)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// treeCPUSeconds is the CPU time (user + system, including reaped children)
// used so far by pid and its living descendants.
func treeCPUSeconds(pid int) (float64, error) {
	var ticks int64
	for i, p := range procTree(pid) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			if i == 0 {
				return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
			}
			continue
		}
		_, t, err := parseProcStat(string(data))
		if err != nil {
			return 0, err
		}
		ticks += t
	}
	return float64(ticks) / clockTicks, nil
}

// treeMemKB sums a /proc/<pid>/status field (VmRSS, VmHWM) in KiB over pid
// and its living descendants.
func treeMemKB(pid int, field string) int64 {
	var sum int64
	for _, p := range procTree(pid) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		if v := parseStatusKB(string(data), field); v > 0 {
			sum += v
		}
	}
	return sum
}

// openFDs counts the open file descriptors of pid.
func openFDs(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(entries)
}

// rssSampler records the peak of the summed VmRSS of a process tree while a
// load runs (forked children that exit before the end are seen this way).
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.peak = max(s.peak, treeMemKB(pid, "VmRSS"))
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops sampling and returns the peak in KiB.
func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

func readCPUTimes() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStatCPU(string(data))
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return strings.TrimSpace(string(data))
	}
	return strings.Join(f[:3], " ")
}

// machine describes where the benchmark ran.
type machine struct {
	NProc    int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	MemTotal string `json:"mem_total"`
}

func describeMachine() machine {
	m := machine{NProc: runtime.NumCPU(), Go: runtime.Version(), CPUModel: "unknown", Kernel: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb := parseStatusKB(string(data), "MemTotal"); kb > 0 {
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return m
}

// raiseNoFile lifts RLIMIT_NOFILE to at least want when allowed (root may
// raise the hard limit), else to the hard limit. Children inherit it. It
// returns the soft limit now in force.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		up := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err == nil {
			return want, nil
		}
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Cur, err)
	}
	return lim.Cur, nil
}

// ports hands out free loopback ports, never the same one twice.
type ports struct {
	mu   sync.Mutex
	used map[int]bool
}

func (p *ports) next() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !p.used[port] {
			p.used[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free port: the kernel keeps returning used ones")
}

// waitListening waits until something listens on port (read from
// /proc/net/tcp*, so the server under test sees no probe connection), or p
// exits, or the timeout passes.
func waitListening(ctx context.Context, p *proc, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			if data, err := os.ReadFile(f); err == nil && listeningPort(string(data), port) {
				return nil
			}
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before listening on port %d: %s", p.name, port, p.describeExit())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on port %d after %v", p.name, port, timeout)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tool is an external program and the Debian packages that provide it.
type tool struct {
	bin  string
	pkgs []string
}

var tools = []tool{
	{"iperf3", []string{"iperf3"}},
	{"redis-server", []string{"redis-server"}},
	{"redis-benchmark", []string{"redis-tools"}},
	{"socat", []string{"socat"}},
	{"haproxy", []string{"haproxy"}},
	{"nginx", nil}, // chosen by nginxPackages
}

// nginxStreamModule returns the load_module line nginx needs for the stream
// module: "" when it is built in, an error when it is neither built in nor
// installed as a dynamic module.
func nginxStreamModule(nginx string) (string, error) {
	out, err := exec.Command(nginx, "-V").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -V: %w", nginx, err)
	}
	switch {
	case bytes.Contains(out, []byte("--with-stream ")), bytes.HasSuffix(bytes.TrimSpace(out), []byte("--with-stream")):
		return "", nil
	case !bytes.Contains(out, []byte("--with-stream=dynamic")):
		return "", errors.New("nginx has no stream module (install nginx-full, or nginx-light and libnginx-mod-stream)")
	}
	for _, dir := range []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules", "/etc/nginx/modules"} {
		so := filepath.Join(dir, "ngx_stream_module.so")
		if _, err := os.Stat(so); err == nil {
			return "load_module " + so + ";", nil
		}
	}
	return "", errors.New("nginx's stream module is dynamic but ngx_stream_module.so is not installed (apt-get install libnginx-mod-stream)")
}

// missingPackages lists the Debian packages to install for the tools that
// are missing.
func missingPackages() []string {
	var pkgs []string
	for _, t := range tools {
		if t.bin == "nginx" {
			if p, err := exec.LookPath("nginx"); err != nil {
				pkgs = append(pkgs, nginxPackages()...)
			} else if _, err := nginxStreamModule(p); err != nil {
				pkgs = append(pkgs, "libnginx-mod-stream")
			}
			continue
		}
		if _, err := exec.LookPath(t.bin); err != nil {
			pkgs = append(pkgs, t.pkgs...)
		}
	}
	return pkgs
}

// nginxPackages picks the packages giving nginx with the stream module from
// what apt offers: nginx-light + libnginx-mod-stream (Debian 11/12), else
// nginx-full, else nginx + libnginx-mod-stream.
func nginxPackages() []string {
	has := func(pkg string) bool {
		out, err := exec.Command("apt-cache", "policy", pkg).Output()
		return err == nil && bytes.Contains(out, []byte("Candidate:")) && !bytes.Contains(out, []byte("Candidate: (none)"))
	}
	switch {
	case has("nginx-light") && has("libnginx-mod-stream"):
		return []string{"nginx-light", "libnginx-mod-stream"}
	case has("nginx-full"):
		return []string{"nginx-full"}
	default:
		return []string{"nginx", "libnginx-mod-stream"}
	}
}

// install installs pkgs with apt-get, running apt-get update first only when
// the first attempt fails. Services the packages would start (nginx, redis,
// haproxy) are kept from starting with a temporary policy-rc.d, so the
// benchmark starts nothing it does not own.
func install(ctx context.Context, pkgs []string, log io.Writer) error {
	if len(pkgs) == 0 {
		return nil
	}
	fmt.Fprintf(log, "installing: %s\n", strings.Join(pkgs, " "))
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# written by tunnel's examples/bench while it installs packages\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	apt := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, truncate(strings.TrimSpace(out.String()), 800))
		}
		return nil
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
	if err := apt(args...); err != nil {
		fmt.Fprintln(log, "apt-get install failed; running apt-get update and retrying")
		if err := apt("update", "-q"); err != nil {
			return err
		}
		return apt(args...)
	}
	return nil
}
