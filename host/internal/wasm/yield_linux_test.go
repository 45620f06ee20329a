package wasm

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gatedInstances makes n instances of a test guest sharing gate.
func gatedInstances(t *testing.T, file string, n int, timeout time.Duration, gate *CPUGate) []*Instance {
	t.Helper()
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	bin, err := os.ReadFile("../../plugin/testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	var ins []*Instance
	for range n {
		in, err := c.Instantiate(ctx, Options{Mode: Sandboxed, MemoryLimit: 1 << 20, CallTimeout: timeout, InitTimeout: time.Second, MaxOutput: 1 << 20, CPU: gate})
		if err != nil {
			t.Fatal(err)
		}
		if in.variant != instrumented {
			t.Fatalf("instance runs as variant %d, want instrumented", in.variant)
		}
		t.Cleanup(func() { in.Close(ctx) })
		ins = append(ins, in)
	}
	return ins
}

// threadCPU is the CPU time of the calling OS thread (lock the goroutine
// to it first).
func threadCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spinCall runs loop.wasm's endless tunnel_on_data on a thread of its own
// and returns the call's error, its wall time and its thread's CPU time.
func spinCall(t *testing.T, in *Instance) (wall, cpu time.Duration, err error) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, c0 := time.Now(), threadCPU(t)
	_, err = in.OnData(NoConn{}, 1, 0, []byte("x"), false)
	return time.Since(start), threadCPU(t) - c0, err
}

// A call that computes without end is throttled past its first
// throttleAfter: it takes a fraction of its thread's time (about 1/16), not
// all of it, until it is cut off at its deadline; and its slot goes back
// to the gate.
func TestLongCallThrottled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RUSAGE_THREAD is Linux's")
	}
	const timeout = 400 * time.Millisecond
	gate := NewCPUGate(1)
	in := gatedInstances(t, "loop.wasm", 1, timeout, gate)[0]
	wall, cpu, err := spinCall(t, in)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	// Without the throttle the thread computes for the whole call (less
	// only when the machine is too busy to give it a CPU).
	if cpu > wall/2 {
		t.Errorf("the spinning call used %s of CPU in %s: not throttled", cpu, wall)
	}
	if in.cpu.yields < 10 {
		t.Errorf("%d yields in %s, want one per %s", in.cpu.yields, wall, cpuSlice)
	}
	if len(gate.slots) != 0 || in.cpu.holding {
		t.Errorf("the call's slot was not given back: %d held", len(gate.slots))
	}
}

// Of two spinning instances sharing a gate of one slot, one computes and
// the other waits, without computing, until its deadline cuts it off.
func TestGateCutsOffWaitingCall(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RUSAGE_THREAD is Linux's")
	}
	const timeout = 300 * time.Millisecond
	gate := NewCPUGate(1)
	ins := gatedInstances(t, "loop.wasm", 2, timeout, gate)
	var wg sync.WaitGroup
	errs, walls, cpus := make([]error, 2), make([]time.Duration, 2), make([]time.Duration, 2)
	for i, in := range ins {
		wg.Go(func() { walls[i], cpus[i], errs[i] = spinCall(t, in) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("call %d: got %v, want ErrTimeout", i, err)
		}
		if walls[i] > timeout+5*time.Second {
			t.Errorf("call %d cut off after %s, want about %s", i, walls[i], timeout)
		}
	}
	// The waiter computed for one slice before it asked for a slot.
	if w := min(cpus[0], cpus[1]); w > 20*time.Millisecond {
		t.Errorf("CPU times %s and %s: both computed, want one waiting", cpus[0], cpus[1])
	}
	if len(gate.slots) != 0 {
		t.Errorf("%d slots still held", len(gate.slots))
	}
}

// Calls without loops never tick: no clock read, no yield, no slot.
func TestShortCallsShareNothing(t *testing.T) {
	gate := NewCPUGate(1)
	in := gatedInstances(t, "noop.wasm", 1, time.Second, gate)[0]
	for range 1000 {
		if _, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false); err != nil {
			t.Fatal(err)
		}
	}
	if in.cpu.yields != 0 || in.cpu.last != 0 || len(gate.slots) != 0 {
		t.Errorf("yields %d, last %d, slots held %d; want none", in.cpu.yields, in.cpu.last, len(gate.slots))
	}
}
