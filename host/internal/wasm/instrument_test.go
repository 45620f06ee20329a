package wasm

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/tetratelabs/wazero"
)

// instrumentSeeds are small real modules: the WAT test guests and the C,
// Rust and AssemblyScript example plugins (loops, bulk memory, globals,
// tables).
func instrumentSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob("../../plugin/testdata/*.wasm")
	examples, _ := filepath.Glob("../../../examples/plugins/*/*.wasm")
	files = append(files, examples...)
	if len(files) < 20 || len(examples) < 3 {
		t.Fatalf("only %d seed modules (%d examples)", len(files), len(examples))
	}
	seeds := map[string][]byte{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seeds[file] = b
	}
	return seeds
}

// FuzzInstrument: instrument never panics; whatever it accepts is
// rewritten exactly as promised (checkRewrite: a check at every function's
// entry and after every loop, one more local, one more global after the
// others, nothing else changed, so no function, global, type or local
// index moves); and when wazero accepts the input, it accepts the output
// too, with the same imports and exports at the same indexes. Seeds
// are the test guests and example plugins; `go test` runs just them, `go
// test -fuzz FuzzInstrument` explores (.ci/run does, briefly).
func FuzzInstrument(f *testing.F) {
	seeds := instrumentSeeds(f)
	names := make([]string, 0, len(seeds))
	for name := range seeds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f.Add(seeds[name])
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, err := instrument(bin)
		if err != nil {
			return
		}
		if err := checkRewrite(bin, out); err != nil {
			t.Fatal(err)
		}
		cm, err := rt.CompileModule(ctx, bin)
		if err != nil {
			return // invalid input: nothing more promised
		}
		defer cm.Close(ctx)
		icm, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("the instrumented form of a valid module is invalid: %v", err)
		}
		defer icm.Close(ctx)
		if a, b := definitions(cm), definitions(icm); !reflect.DeepEqual(a, b) {
			t.Fatalf("imports and exports moved:\nbefore %v\nafter  %v", a, b)
		}
	})
}

// The Go guests (3 MiB each, the built-in plugins) are rewritten exactly
// as promised too. Too big to be fuzz seeds.
func TestInstrumentGoGuest(t *testing.T) {
	f, err := os.Open("../../../plugins/builtin/wasm/deny.wasm.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRewrite(bin, out); err != nil {
		t.Fatal(err)
	}
	if loops, err := countLoops(bin); err != nil || loops < 1000 {
		t.Fatalf("%d loops in a Go guest (%v)", loops, err)
	}
}

// The seeds all have loops to tick in and are rewritten as promised; a
// module's own checks are decoded, not only counted.
func TestInstrumentSeeds(t *testing.T) {
	total := 0
	for name, bin := range instrumentSeeds(t) {
		out, err := instrument(bin)
		if err != nil {
			continue // the guests that test load errors (no input_buffer import, ...)
		}
		if err := checkRewrite(bin, out); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		loops, err := countLoops(bin)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		total += loops
	}
	if total < 10 {
		t.Errorf("only %d loops in the seeds", total)
	}
}

// checkRewrite decodes the module before (in) and after (out) the rewrite
// and reports any difference but the promised ones: every section but the
// global, code and DWARF sections is byte for byte the same (no import,
// function, table or type is added); the global section has one more
// global after the others, a mutable i32 starting at 0 (the step counter;
// the section is added, just before the first section that must follow
// it, if the module had none), so no global index moves; each body
// declares the same locals plus one i32 (the counter's scratch, after every
// existing local, so no local index moves) and has the same
// instructions, byte for byte, with the counter's code around them
// (checkBody), whose checks call the tunnel.input_buffer import with the
// tick arguments.
func checkRewrite(in, out []byte) error {
	inSecs, err := sections(in)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	outSecs, err := sections(out)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	l, err := readLayout(inSecs)
	if err != nil {
		return err
	}
	var kept []section
	hasGlobals := false
	for _, s := range inSecs {
		if s.id != secCustom || !isDWARF(s.payload) {
			kept = append(kept, s)
		}
		hasGlobals = hasGlobals || s.id == secGlobal
	}
	if !hasGlobals {
		// Where the rewrite must add it: before the export, start,
		// element, data count, code or data section, else at the end.
		at := len(kept)
		for i, s := range kept {
			if s.id >= 7 && s.id <= 12 {
				at = i
				break
			}
		}
		kept = append(kept[:at], append([]section{{id: secGlobal}}, kept[at:]...)...)
	}
	if len(kept) != len(outSecs) {
		return fmt.Errorf("%d sections, want %d", len(outSecs), len(kept))
	}
	for i, s := range kept {
		o := outSecs[i]
		switch {
		case o.id != s.id:
			return fmt.Errorf("section %d has id %d, want %d", i, o.id, s.id)
		case s.id == secCode:
			if err := checkCode(s.payload, o.payload, l); err != nil {
				return err
			}
		case s.id == secGlobal:
			if err := checkGlobals(s.payload, o.payload); err != nil {
				return err
			}
		case !bytes.Equal(s.payload, o.payload):
			return fmt.Errorf("section %d (id %d) changed", i, s.id)
		}
	}
	return nil
}

// checkGlobals: out is the global section in (nil: none) with one more
// global at the end, (mut i32) initialized by i32.const 0.
func checkGlobals(in, out []byte) error {
	var n uint32
	var rest []byte
	if in != nil {
		r := &reader{b: in}
		n = r.u32()
		rest = in[r.off:]
	}
	want := appendULEB(nil, uint64(n)+1)
	want = append(want, rest...)
	want = append(want, 0x7f, 0x01, 0x41, 0x00, 0x0b) // i32 mut (i32.const 0) end
	if !bytes.Equal(out, want) {
		return fmt.Errorf("global section %x, want %x (the %d globals, then the counter)", out, want, n)
	}
	return nil
}

func checkCode(in, out []byte, l *layout) error {
	ir, or := &reader{b: in}, &reader{b: out}
	n := ir.u32()
	if on := or.u32(); on != n {
		return fmt.Errorf("%d bodies, want %d", on, n)
	}
	for i := 0; i < int(n); i++ {
		ib := ir.bytes(int(ir.u32()))
		ob := or.bytes(int(or.u32()))
		if ir.err != nil || or.err != nil {
			return fmt.Errorf("body %d: %v / %v", i, ir.err, or.err)
		}
		if err := checkBody(ib, ob, l.params[l.bodyType[i]], uint32(l.globals), uint32(l.tick)); err != nil {
			return fmt.Errorf("body %d: %w", i, err)
		}
	}
	if or.off != len(out) {
		return fmt.Errorf("%d trailing bytes in the code section", len(out)-or.off)
	}
	return nil
}

func checkBody(in, out []byte, nparams int, global, tick uint32) error {
	ir, or := &reader{b: in}, &reader{b: out}
	groups := ir.u32()
	decls := ir.off
	counter := ir.localDecls(groups, nparams)
	inDecls := in[decls:ir.off]
	if og := or.u32(); og != groups+1 {
		return fmt.Errorf("%d local groups, want %d", og, groups+1)
	}
	wantDecls := append(append([]byte{}, inDecls...), 1, valI32)
	if got := or.bytes(len(wantDecls)); !bytes.Equal(got, wantDecls) {
		return fmt.Errorf("locals %x, want %x (the old ones, then one i32)", got, wantDecls)
	}
	// What the package doc promises, instruction by instruction: the entry
	// code first; the step code after each loop's block type; the save
	// code before a call and before every way out of the function (return,
	// a branch to its label, its final end); the load code after a call.
	want := wantEntry(global, counter, tick)
	save := []byte{0x20} // local.get counter; global.set global
	save = appendULEB(save, uint64(counter))
	save = appendULEB(append(save, 0x24), uint64(global))
	load := []byte{0x23} // global.get global; local.set counter
	load = appendULEB(load, uint64(global))
	load = appendULEB(append(load, 0x21), uint64(counter))
	depth := uint32(0)
	for ir.off < len(in) {
		start := ir.off
		op := ir.instr()
		if ir.err != nil {
			return ir.err
		}
		raw := in[start:ir.off]
		var pre, post []byte
		switch op {
		case 0x02, 0x04: // block, if
			depth++
		case 0x03: // loop
			depth++
			post = wantStep(counter, tick)
		case 0x0b: // end
			if depth == 0 {
				pre = save
			}
			depth--
		case 0x0f: // return
			pre = save
		case 0x0c, 0x0d, 0x0e: // br, br_if, br_table
			lr := &reader{b: raw[1:]}
			n := uint32(1)
			if op == 0x0e {
				n = lr.u32() + 1
			}
			for ; n > 0; n-- {
				if lr.u32() == depth {
					pre = save
				}
			}
		case 0x10, 0x11: // call, call_indirect
			pre, post = save, load
		}
		want = append(append(append(want, pre...), raw...), post...)
	}
	got := out[or.off:]
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		return fmt.Errorf("the body differs from the promised rewrite at byte %d of %d (want %d): got %x, want %x", i, len(got), len(want), got[i:min(len(got), i+24)], want[i:min(len(want), i+24)])
	}
	return nil
}

// wantEntry and wantStep are the entry and step code as the package doc
// describes them, spelled out independently of entryCode and stepCode.
func wantEntry(global, counter, tick uint32) []byte {
	b := []byte{0x23} // global.get
	b = appendULEB(b, uint64(global))
	b = append(b, 0x41, 0x01, 0x6a, 0x22) // i32.const 1; i32.add; local.tee
	b = appendULEB(b, uint64(counter))
	return wantTickIfDue(b, tick)
}

func wantStep(counter, tick uint32) []byte {
	b := []byte{0x20} // local.get
	b = appendULEB(b, uint64(counter))
	b = append(b, 0x41, 0x01, 0x6a, 0x22) // i32.const 1; i32.add; local.tee
	b = appendULEB(b, uint64(counter))
	return wantTickIfDue(b, tick)
}

func wantTickIfDue(b []byte, tick uint32) []byte {
	b = append(b, 0x41, 0xff, 0x1f) // i32.const 4095
	if fuelPeriod != 4096 {
		panic("fuelPeriod changed: update wantTickIfDue")
	}
	b = append(b, 0x71, 0x45, 0x04, 0x40)       // i32.and; i32.eqz; if (no result)
	b = append(b, 0x41, 0x7f, 0x41, 0x00, 0x10) // i32.const -1; i32.const 0; call
	b = appendULEB(b, uint64(tick))
	return append(b, 0x1a, 0x0b) // drop; end
}

// countLoops counts the loop instructions of a module's bodies.
func countLoops(bin []byte) (int, error) {
	secs, err := sections(bin)
	if err != nil {
		return 0, err
	}
	loops := 0
	for _, s := range secs {
		if s.id != secCode {
			continue
		}
		r := &reader{b: s.payload}
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			br := &reader{b: r.bytes(int(r.u32()))}
			br.localDecls(br.u32(), 0)
			for br.off < len(br.b) && br.err == nil {
				if br.instr() == opLoop {
					loops++
				}
			}
			if br.err != nil {
				return 0, br.err
			}
		}
		if r.err != nil {
			return 0, r.err
		}
	}
	return loops, nil
}

// definitions lists the functions the module imports and exports, with
// their indexes and types, and its exported memories, as wazero decodes
// them.
func definitions(cm wazero.CompiledModule) []string {
	var ds []string
	for _, fd := range cm.ImportedFunctions() {
		mod, name, _ := fd.Import()
		ds = append(ds, fmt.Sprintf("import %d %s.%s %v %v", fd.Index(), mod, name, fd.ParamTypes(), fd.ResultTypes()))
	}
	for name, fd := range cm.ExportedFunctions() {
		ds = append(ds, fmt.Sprintf("export %d %s %v %v", fd.Index(), name, fd.ParamTypes(), fd.ResultTypes()))
	}
	for name, m := range cm.ExportedMemories() {
		mx, ok := m.Max()
		ds = append(ds, fmt.Sprintf("memory %s %d %d %v", name, m.Min(), mx, ok))
	}
	sort.Strings(ds)
	return ds
}

// TestInstrumentCountsStepsAcrossFrames: a loop that calls a function
// whose own loop runs 100 times per call, 1000 times, makes about 102,000
// steps (1,000 outer iterations, 1,000 calls, 100,000 inner iterations)
// and must tick once per fuelPeriod of them. Counting per frame, as the
// rewrite once did, it never ticked: no frame reached fuelPeriod, and
// with heavier bodies a hostile guest ran 20 s past a 50 ms limit.
func TestInstrumentCountsStepsAcrossFrames(t *testing.T) {
	bin := append([]byte{}, magic...)
	bin = appendSection(bin, 1, []byte{2, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})
	bin = appendSection(bin, 2, append([]byte{1, 6}, "tunnel\x0cinput_buffer\x00\x00"...))
	bin = appendSection(bin, 3, []byte{2, 1, 1})
	bin = appendSection(bin, 7, []byte{1, 3, 'r', 'u', 'n', 0, 2})
	// count(n) is: loop; local.get 0; i32.const 1; i32.add; local.tee 0;
	// i32.const n; i32.lt_u; br_if 0; end
	count := func(n []byte, call bool) []byte {
		b := []byte{1, 1, 0x7f, 0x03, 0x40}
		if call {
			b = append(b, 0x10, 1) // call $inner
		}
		b = append(b, 0x20, 0, 0x41, 1, 0x6a, 0x22, 0, 0x41)
		b = append(b, n...)
		return append(b, 0x49, 0x0d, 0, 0x0b, 0x0b)
	}
	inner, outer := count([]byte{0xe4, 0x00}, false), count([]byte{0xe8, 0x07}, true) // 100, 1000
	code := []byte{2, byte(len(inner))}
	code = append(append(code, inner...), byte(len(outer)))
	bin = appendSection(bin, 10, append(code, outer...))
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	ticks := 0
	if _, err := rt.NewHostModuleBuilder("tunnel").NewFunctionBuilder().
		WithFunc(func(ptr, n uint32) uint32 {
			if ptr == tickPtr && n == 0 {
				ticks++
			}
			return 0
		}).Export("input_buffer").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.ExportedFunction("run").Call(ctx); err != nil {
		t.Fatal(err)
	}
	const steps = 1 + 1000 + 1000 + 1000*100 // run's entry, its iterations, the calls, theirs
	if want := steps / fuelPeriod; ticks < want || ticks > want+1 {
		t.Errorf("%d ticks for %d steps, want %d", ticks, steps, want)
	}
}
