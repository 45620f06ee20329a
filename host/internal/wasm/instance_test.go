package wasm

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func instance(t *testing.T, file string, timeout time.Duration) *Instance {
	t.Helper()
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	bin, err := os.ReadFile("../../testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.Instantiate(ctx, Options{Mode: Sandboxed, MemoryLimit: 1 << 20, CallTimeout: timeout, InitTimeout: time.Second, MaxOutput: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(ctx) })
	return in
}

// Short calls across many timeout periods are never cut off: the timer
// re-arms itself for the running call's own deadline.
func TestWatchdogSparesShortCalls(t *testing.T) {
	in := instance(t, "noop.wasm", 2*time.Millisecond)
	end := time.Now().Add(100 * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		if _, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false); err != nil {
			t.Fatalf("call %d failed: %v", n, err)
		}
		n++
		if n%64 == 0 {
			time.Sleep(time.Millisecond) // let the timer find the instance idle too
		}
	}
	if in.killed.Load() {
		t.Fatal("instance killed")
	}
}

// A call that never returns is cut off at its deadline, and the instance
// refuses every later call.
func TestWatchdogCutsOffLoop(t *testing.T) {
	const timeout = 50 * time.Millisecond
	in := instance(t, "loop.wasm", timeout)
	// Calls before, so the timer is armed for an earlier deadline.
	start := time.Now()
	_, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false)
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if d < timeout || d > timeout+5*time.Second {
		t.Errorf("cut off after %s, want about %s", d, timeout)
	}
	if _, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false); !errors.Is(err, ErrTimeout) {
		t.Errorf("second call: got %v, want ErrTimeout", err)
	}
}
