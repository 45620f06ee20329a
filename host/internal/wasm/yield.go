package wasm

import (
	"runtime"
	"time"
)

// CPU sharing: how a guest that computes for long leaves the rest of the
// process (other routes, other plugins, the event loops) its share of the
// CPUs. See RATIONALE.md, "Why are long guest calls gated, yielded and
// throttled?".
//
// Compiled guest code cannot be preempted by the Go scheduler: a goroutine
// in it keeps its P and its OS thread until it returns to Go. The
// instrumentation's tick (instrument.go) is such a return, at least every
// fuelPeriod loop iterations. At a tick, a call that has computed for
// cpuSlice since it started or last yielded
//
//   - takes one of its plugin's CPU slots (CPUGate) the first time, waiting
//     for one (at most until its deadline) while the plugin's other
//     instances hold them all: at most GOMAXPROCS-1 long calls of a plugin
//     compute at once, so a P is always left to the rest of the process;
//   - yields its P (runtime.Gosched), so that the goroutines queued behind
//     it run within a slice rather than at the scheduler's 10 ms
//     preemption;
//   - once the call has run for throttleAfter, sleeps throttleSleep
//     instead of yielding: a call that computes without end (it will be
//     cut off at its deadline) takes 1/16 of a CPU rather than a whole one,
//     which the OS would otherwise share with the other routes' threads.
//
// A call shorter than cpuSlice never waits, yields nor takes a slot, and
// only a tick reads the clock: calls without loops pay nothing. A call's
// slot is given back when it returns (endCall). The times are wall-clock
// times since the call started (a thread's CPU clock costs a system call):
// on a machine so busy that the OS keeps a looping call off the CPU for
// 10 ms, the call is throttled sooner than its own computing warrants.
//
// The slot is waited for with the instance's and the connection's locks
// held, as the call itself holds them; a call holding a slot needs no
// other lock to finish, and its deadline bounds the wait.
const (
	// cpuSlice is how long a call computes between two yields.
	cpuSlice = 100 * time.Microsecond
	// throttleAfter is how long a call runs at full speed.
	throttleAfter = 10 * time.Millisecond
	// throttleSleep is the pause after each slice of a call past
	// throttleAfter: fifteen slices, a duty cycle of 1/16.
	throttleSleep = 15 * cpuSlice
)

// CPUGate caps how many long calls (calls past their first cpuSlice) of a
// plugin's instances compute at once. One gate is shared by the instances
// of a plugin (Options.CPU); nil caps nothing.
type CPUGate struct {
	slots chan struct{}
}

// NewCPUGate returns a gate of n slots (at least 1).
func NewCPUGate(n int) *CPUGate {
	return &CPUGate{slots: make(chan struct{}, max(1, n))}
}

// DefaultCPUSlots is the size of a plugin's CPUGate: GOMAXPROCS-1, at
// least 1.
func DefaultCPUSlots() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// cpuShare is an instance's state of CPU sharing for the running call.
type cpuShare struct {
	gate    *CPUGate
	last    int64 // when the call started or last yielded (now); 0: no tick yet
	holding bool  // the call holds a slot of gate
	yields  int   // since the instance was made (for tests)
}

// shareCPU runs at every tick of a call that has not been cut off.
func (in *Instance) shareCPU() {
	s := &in.cpu
	t := now()
	start := in.deadline.Load() - int64(in.timeout)
	if s.last == 0 {
		s.last = start // the first tick of the call
	}
	if t-s.last < int64(cpuSlice) {
		return
	}
	if s.gate != nil && !s.holding {
		select {
		case s.gate.slots <- struct{}{}:
		default:
			select {
			case s.gate.slots <- struct{}{}:
			case <-in.kill:
				// Cut off while waiting: the call ends as any other
				// call past its deadline.
				in.violation = ErrTimeout
				panic(trapped{})
			}
		}
		s.holding = true
	}
	s.yields++
	if t-start >= int64(throttleAfter) {
		time.Sleep(throttleSleep)
	} else {
		runtime.Gosched()
	}
	s.last = now()
}

// endCall gives back what the call took: its slot.
func (in *Instance) endCall() {
	s := &in.cpu
	s.last = 0
	if s.holding {
		s.holding = false
		<-s.gate.slots
	}
}
