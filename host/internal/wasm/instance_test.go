package wasm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
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
// re-arms itself for the running call's own deadline. A call the machine's
// load really did stretch past its limit may be cut off (that is the
// watchdog doing its job, and it happens under -race on a busy machine):
// the test then checks that the call lasted at least the limit, and goes on
// with a new instance. A call cut off sooner is the bug this looks for.
func TestWatchdogSparesShortCalls(t *testing.T) {
	const timeout = 2 * time.Millisecond
	in := instance(t, "noop.wasm", timeout)
	end := time.Now().Add(100 * time.Millisecond)
	n, overran := 0, 0
	// Both many calls and many timeout periods, however slow the machine.
	for n < 2000 || time.Now().Before(end) {
		start := time.Now()
		_, err := in.OnData(NoConn{}, 1, 0, []byte("x"), false)
		if d := time.Since(start); err != nil {
			if !errors.Is(err, ErrTimeout) || d < timeout {
				t.Fatalf("call %d failed after %s (limit %s): %v", n, d, timeout, err)
			}
			if overran++; overran > 100 {
				t.Fatalf("%d calls of a no-op guest overran %s", overran, timeout)
			}
			in = instance(t, "noop.wasm", timeout)
			continue
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

// The rewrite adds one i32 local and the step check per body, the check
// after each loop and the step counter's global, and nothing else; code
// that names the new local or global is refused.
func TestInstrumentShape(t *testing.T) {
	bin, _ := os.ReadFile("../../plugin/testdata/noop.wasm")
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	// noop has 3 bodies, no loop, one call and no global: each body gains
	// a local group (count 1, i32), the 22-byte entry code on global 0 and
	// the 4-byte save before its final end; the call a save before and a
	// 4-byte load after; the module a global section (id, size, 1 global:
	// i32 mut i32.const 0 end).
	if !bytes.Contains(out, []byte{0x23, 0x00, 0x41, 0x01, 0x6a, 0x22, 0x00, 0x41, 0xff, 0x1f, 0x71, 0x45}) {
		t.Errorf("no entry code on global 0 in %x", out)
	}
	if got, want := len(out)-len(bin), 3*(2+22+4)+(4+4)+8; got != want {
		t.Errorf("noop grew by %d bytes, want %d", got, want)
	}
	loop, _ := os.ReadFile("../../plugin/testdata/loop.wasm")
	out, err = instrument(loop)
	if err != nil {
		t.Fatal(err)
	}
	// tunnel_on_data has 4 params: the scratch is local 4, the counter
	// global 0.
	if !bytes.Contains(out, []byte{0x03, 0x40, 0x20, 0x04, 0x41, 0x01, 0x6a, 0x22, 0x04, 0x41, 0xff, 0x1f, 0x71, 0x45}) {
		t.Errorf("no step code after the loop opcode in %x", out)
	}
	// With an imported global and a defined one, the counter is global 2;
	// global.set on either of the others (immutable) would not validate.
	globals := append([]byte{}, magic...)
	globals = appendSection(globals, 1, []byte{2, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})
	globals = appendSection(globals, 2, append(append([]byte{2, 6}, "tunnel\x0cinput_buffer\x00\x00"...), "\x03env\x01g\x03\x7f\x00"...))
	globals = appendSection(globals, 3, []byte{1, 1})
	globals = appendSection(globals, 6, []byte{1, 0x7f, 0, 0x41, 5, 0x0b})
	globals = appendSection(globals, 10, []byte{1, 5, 0, 0x03, 0x40, 0x0b, 0x0b})
	out, err = instrument(globals)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRewrite(globals, out); err != nil {
		t.Error(err)
	}
	if !bytes.Contains(out, []byte{0x23, 0x02, 0x41, 0x01, 0x6a, 0x22, 0x00, 0x41, 0xff, 0x1f}) {
		t.Errorf("no entry code on global 2 in %x", out)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	if _, err := rt.CompileModule(ctx, globals); err != nil {
		t.Fatalf("the hand-made module: %v", err)
	}
	if _, err := rt.CompileModule(ctx, out); err != nil {
		t.Errorf("instrumented: %v", err)
	}
	// Code that names the new local or global (invalid as written, valid
	// once rewritten) could reset the counter: refused. The hand-made
	// module's body is "loop end"; these write local 0 (the scratch: the
	// function has no params or locals) or global 2 (the counter).
	for _, code := range [][]byte{{0x41, 1, 0x21, 0}, {0x41, 1, 0x24, 2}} {
		body := append(append([]byte{0}, code...), 0x0b)
		bad := append([]byte{}, magic...)
		bad = appendSection(bad, 1, []byte{2, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})
		bad = appendSection(bad, 2, append(append([]byte{2, 6}, "tunnel\x0cinput_buffer\x00\x00"...), "\x03env\x01g\x03\x7f\x00"...))
		bad = appendSection(bad, 3, []byte{1, 1})
		bad = appendSection(bad, 6, []byte{1, 0x7f, 0, 0x41, 5, 0x0b})
		bad = appendSection(bad, 10, append([]byte{1, byte(len(body))}, body...))
		if _, err := instrument(bad); err == nil || !strings.Contains(err.Error(), "past the function's locals or the module's globals") {
			t.Errorf("code %x: %v", code, err)
		}
	}
	// A global section after the export section (invalid) would have had
	// a second global section inserted before it: refused.
	misplaced := append([]byte{}, magic...)
	misplaced = appendSection(misplaced, 1, []byte{2, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})
	misplaced = appendSection(misplaced, 2, append([]byte{1, 6}, "tunnel\x0cinput_buffer\x00\x00"...))
	misplaced = appendSection(misplaced, 7, []byte{0})
	misplaced = appendSection(misplaced, 6, []byte{1, 0x7f, 0, 0x41, 5, 0x0b})
	if _, err := instrument(misplaced); err == nil || !strings.Contains(err.Error(), "the global section is out of place") {
		t.Errorf("a global section after the exports: %v", err)
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

// TestConfigErrorIsPrintable: a guest's config_error text reaches a
// terminal and the log without its control characters: an escape
// sequence, a newline that would forge a log line, NULs, invalid UTF-8.
func TestConfigErrorIsPrintable(t *testing.T) {
	got := printable([]byte("bad \x1b[31mred\x1b[0m\nlevel=ERROR forged\x00 \u202eevil\xff ünïcode"))
	const want = `bad \x1b[31mred\x1b[0m\x0alevel=ERROR forged\x00 \u202eevil` + "\uFFFD ünïcode"
	if got != want {
		t.Errorf("printable = %q\nwant        %q", got, want)
	}
}
