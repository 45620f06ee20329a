//go:build linux

package main

// Every external process the benchmark starts goes through a procs registry:
// each runs in its own process group (so forks such as socat's children and
// nginx's workers are reached too) and is stopped by its group id, never by
// name. The registry is emptied by stopAll, which main defers and the signal
// handler calls.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// procs owns the processes started by the benchmark.
type procs struct {
	mu      sync.Mutex
	list    []*proc
	stopped bool
	verbose io.Writer // receives one line per started/stopped process; nil: quiet
}

// proc is one started process (the leader of its own process group).
type proc struct {
	name string
	argv []string
	cmd  *exec.Cmd
	pid  int
	out  *tailBuffer // stdout, last bytes (or all of it when keepOut)
	errb *tailBuffer // stderr, last bytes
	done chan struct{}
	err  error // valid once done is closed
}

// startOpts are the optional parts of procs.start.
type startOpts struct {
	dir     string
	env     []string // appended to os.Environ()
	keepOut int      // bytes of stdout to keep (default 4 KiB)
	// pidns runs the process as PID 1 of a new PID namespace where the
	// kernel allows it (root): when it dies, even by SIGKILL, the kernel
	// kills everything it forked (nginx's workers outlive their master
	// otherwise). Pdeathsig covers the leader itself.
	pidns bool
}

// noPidNS is set once creating a PID namespace failed (not privileged).
var noPidNS atomic.Bool

// start runs argv in a new process group. The process is killed with
// SIGKILL if the benchmark itself dies (Pdeathsig).
func (ps *procs) start(name string, argv []string, o startOpts) (*proc, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped {
		return nil, fmt.Errorf("start %s: the benchmark is stopping", name)
	}
	keep := o.keepOut
	if keep == 0 {
		keep = 4 << 10
	}
	p := &proc{name: name, argv: argv, out: &tailBuffer{max: keep}, errb: &tailBuffer{max: 4 << 10}, done: make(chan struct{})}
	var cmd *exec.Cmd
	for {
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Dir = o.dir
		if len(o.env) > 0 {
			cmd.Env = append(os.Environ(), o.env...)
		}
		cmd.Stdout = p.out
		cmd.Stderr = p.errb
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if o.pidns && !noPidNS.Load() {
			cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
		}
		// Forks that outlive the leader may hold the output pipes; do not
		// wait for them forever (stop kills the whole group anyway).
		cmd.WaitDelay = 2 * time.Second
		err := cmd.Start()
		if err != nil && cmd.SysProcAttr.Cloneflags != 0 {
			noPidNS.Store(true) // not privileged: go without
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
		}
		break
	}
	p.cmd = cmd
	p.pid = cmd.Process.Pid
	ps.list = append(ps.list, p)
	if ps.verbose != nil {
		fmt.Fprintf(ps.verbose, "  started %s pid %d: %s\n", name, p.pid, strings.Join(argv, " "))
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// describeExit returns how the process ended and the tail of its stderr.
func (p *proc) describeExit() string {
	msg := strings.TrimSpace(p.errb.String())
	if msg == "" {
		msg = strings.TrimSpace(p.out.String())
	}
	if msg != "" {
		return fmt.Sprintf("%v: %s", p.err, truncate(msg, 600))
	}
	return fmt.Sprint(p.err)
}

// stop ends the process group: SIGTERM, then SIGKILL after grace. It returns
// once the leader has been reaped. Stopping twice is harmless.
func (p *proc) stop(grace time.Duration) {
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	}
	// Members of the group that outlived the leader (workers, forks).
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
}

// remove stops p and forgets it.
func (ps *procs) remove(p *proc, grace time.Duration) {
	p.stop(grace)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, q := range ps.list {
		if q == p {
			ps.list = append(ps.list[:i], ps.list[i+1:]...)
			break
		}
	}
}

// stopAll stops every process still registered, all at once, and refuses
// new starts afterwards.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	ps.stopped = true
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(3 * time.Second)
		}()
	}
	wg.Wait()
	if ps.verbose != nil && len(list) > 0 {
		fmt.Fprintf(ps.verbose, "stopped %d processes\n", len(list))
	}
}

// run starts argv, waits for it to end within timeout (or ctx), and returns
// its stdout. A non-zero exit is an error carrying the tail of stderr.
func (ps *procs) run(ctx context.Context, name string, argv []string, timeout time.Duration, keepOut int) ([]byte, error) {
	p, err := ps.start(name, argv, startOpts{keepOut: keepOut})
	if err != nil {
		return nil, err
	}
	defer ps.remove(p, time.Second)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", name, context.Cause(ctx))
	case <-t.C:
		return nil, fmt.Errorf("%s: still running after %v (%s)", name, timeout, strings.Join(argv, " "))
	}
	if p.err != nil {
		// iperf3 -J reports its errors in the JSON on stdout.
		return p.out.Bytes(), fmt.Errorf("%s: %s", name, p.describeExit())
	}
	if p.out.dropped {
		return nil, fmt.Errorf("%s: output larger than %d bytes", name, keepOut)
	}
	return p.out.Bytes(), nil
}

// tailBuffer is an io.Writer keeping the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped bool
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.dropped = true
	}
	return len(b), nil
}

// Bytes returns a copy of the kept bytes.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}

func (t *tailBuffer) String() string { return string(t.Bytes()) }

var errUnavailable = errors.New("not available")
