package wasm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func instance(t *testing.T, file string, timeout time.Duration) *Instance {
	return instanceOf(t, file, timeout, instrumented)
}

func instanceOf(t *testing.T, file string, timeout time.Duration, v variant) *Instance {
	t.Helper()
	return instanceInit(t, file, timeout, time.Second, v)
}

// instanceInit is instanceOf with the init calls' own time limit.
func instanceInit(t *testing.T, file string, timeout, initTimeout time.Duration, v variant) *Instance {
	t.Helper()
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		t.Fatal(err)
	}
	e.noInstrument = v == guarded
	t.Cleanup(func() { e.Close(ctx) })
	bin, err := os.ReadFile("../../plugin/testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	mode := Sandboxed
	if v == plain {
		mode = Trusted
	}
	in, err := c.Instantiate(ctx, Options{Mode: mode, MemoryLimit: 1 << 20, CallTimeout: timeout, InitTimeout: initTimeout, MaxOutput: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if in.variant != v {
		t.Fatalf("instance runs as variant %d, want %d", in.variant, v)
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
	for _, v := range []variant{instrumented, guarded} {
		t.Run(map[variant]string{instrumented: "instrumented", guarded: "guarded"}[v], func(t *testing.T) {
			testCutOff(t, v)
		})
	}
}

func testCutOff(t *testing.T, v variant) {
	const timeout = 50 * time.Millisecond
	// The init calls get far longer than a call: the first call, made right
	// after them, must still be cut off at its own deadline, not at the
	// one the watchdog was armed for during init.
	const initTimeout = 30 * time.Second
	in := instanceInit(t, "loop.wasm", timeout, initTimeout, v)
	start := time.Now()
	_, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false)
	d := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if d < timeout || d > timeout+5*time.Second {
		t.Errorf("cut off after %s, want about %s (the init calls' limit is %s)", d, timeout, initTimeout)
	}
	if _, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false); !errors.Is(err, ErrTimeout) {
		t.Errorf("second call: got %v, want ErrTimeout", err)
	}
}

// Every test guest that passes validation can be instrumented, and the
// result is valid WebAssembly (wazero compiles it).
func TestInstrumentTestGuests(t *testing.T) {
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	files, _ := filepath.Glob("../../plugin/testdata/*.wasm")
	if len(files) < 10 {
		t.Fatalf("only %d test guests", len(files))
	}
	for _, f := range files {
		bin, _ := os.ReadFile(f)
		c, err := e.Compile(ctx, bin)
		if err != nil {
			continue // the guests that test load errors
		}
		if !c.Instrumented() {
			ibin, ierr := instrument(bin)
			t.Errorf("%s: not instrumented (%v, %d bytes)", f, ierr, len(ibin))
		}
		c.Close(ctx)
	}
}

// The rewrite adds one i32 local per body and the check after each loop,
// and nothing else.
func TestInstrumentShape(t *testing.T) {
	bin, _ := os.ReadFile("../../plugin/testdata/noop.wasm")
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	// noop has 3 bodies and no loop: each gains a local group (count 1, i32).
	if got, want := len(out)-len(bin), 3*2; got != want {
		t.Errorf("noop grew by %d bytes, want %d", got, want)
	}
	loop, _ := os.ReadFile("../../plugin/testdata/loop.wasm")
	out, err = instrument(loop)
	if err != nil {
		t.Fatal(err)
	}
	// tunnel_on_data has 4 params: the counter is local 4.
	if !bytes.Contains(out, []byte{0x03, 0x40, 0x20, 0x04, 0x41, 0x01, 0x6a, 0x22, 0x04, 0x41, 0xff, 0x1f, 0x71, 0x45}) {
		t.Errorf("no counter check after the loop opcode in %x", out)
	}
	// DWARF (offsets into the code) is dropped; other custom sections stay.
	custom := func(name string) []byte {
		p := append([]byte{byte(len(name))}, name...)
		p = append(p, 1, 2, 3)
		return append([]byte{0, byte(len(p))}, p...)
	}
	withCustom := append(append(append([]byte{}, bin...), custom(".debug_info")...), custom("producers")...)
	out, err = instrument(withCustom)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte(".debug_info")) || !bytes.Contains(out, []byte("producers")) {
		t.Errorf("custom sections after instrumenting: %q", out)
	}
	if _, err := instrument([]byte("\x00asm\x01\x00\x00\x00\x0a\x05\x01\x03\x00\xff\x0b")); err == nil {
		t.Error("an unknown opcode was accepted")
	}
}
