package wasm

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// oneFunc is a module of one function, () -> (), whose body is code
// followed by its end.
func oneFunc(code []byte) []byte {
	bin := append([]byte{}, magic...)
	bin = appendSection(bin, secType, []byte{1, 0x60, 0, 0})
	bin = appendSection(bin, secFunction, []byte{1, 0})
	body := append(append([]byte{0}, code...), opEnd) // no locals
	bin = appendSection(bin, secCode, append(appendULEB([]byte{1}, uint64(len(body))), body...))
	return bin
}

// repeat is n times open, then n times close.
func repeat(open, close []byte, n int) []byte {
	return append(bytes.Repeat(open, n), bytes.Repeat(close, n)...)
}

// brTable is a block holding a br_table of n labels, all to that block.
func brTable(n int) []byte {
	b := []byte{opBlock, 0x40, 0x41, 0, opBrTable}
	b = appendULEB(b, uint64(n))
	b = append(b, make([]byte, n+1)...) // the labels and the default: 0
	return append(b, opEnd)
}

// TestCompileWorkOfTheBuiltIns: the standard-Go built-ins pass, far under
// the bound.
func TestCompileWorkOfTheBuiltIns(t *testing.T) {
	files, err := filepath.Glob("../../../plugins/builtin/wasm/*.wasm.gz")
	if err != nil || len(files) < 10 {
		t.Fatalf("the built-in modules: %v, %v", files, err)
	}
	for _, f := range files {
		gz, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		bin, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkCompileWork(bin); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
		secs, _ := sections(bin)
		var work uint64
		for _, s := range secs {
			if s.id != secCode {
				continue
			}
			r := &reader{b: s.payload}
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				sh, ok := shapeOf(r.bytes(int(r.u32())))
				if !ok {
					t.Fatalf("%s: a body does not parse", f)
				}
				work += sh.work()
			}
		}
		if work == 0 || work > maxCompileWork/10 || work > 10*uint64(len(bin)) {
			t.Errorf("%s: %d units of compile work for %d bytes; want some, at most a tenth of the bound %d and 10 per byte", filepath.Base(f), work, len(bin), maxCompileWork)
		}
	}
}

// TestCompileWorkRefusesHostileShapes: small modules whose compile would
// take the compiler from seconds to minutes (figures in complexity.go) are
// refused at once, before any compile; shapes as large but under the bound
// pass.
func TestCompileWorkRefusesHostileShapes(t *testing.T) {
	t.Parallel()
	e, err := NewEngine("")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	for _, tc := range []struct {
		name string
		code []byte
		ok   bool
	}{
		{"100,000 blocks one after the other", bytes.Repeat([]byte{opBlock, 0x40, opEnd}, 100_000), false},
		{"20,000 nested loops", repeat([]byte{opLoop, 0x40}, []byte{opEnd}, 20_000), false},
		{"3,000 loops one after the other", bytes.Repeat([]byte{opLoop, 0x40, opEnd}, 3_000), false},
		{"20,000 nested ifs", repeat([]byte{0x41, 0, opIf, 0x40}, []byte{opEnd}, 20_000), false},
		{"a br_table of 200,000 labels", brTable(200_000), false},
		{"10,000 blocks one after the other", bytes.Repeat([]byte{opBlock, 0x40, opEnd}, 10_000), true},
		{"1,000 nested loops", repeat([]byte{opLoop, 0x40}, []byte{opEnd}, 1_000), true},
		{"a br_table of 20,000 labels", brTable(20_000), true},
	} {
		bin := oneFunc(tc.code)
		err := checkCompileWork(bin)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		const want = "module too complex to compile in bounded time: "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: checkCompileWork = %v, want %q…", tc.name, err, want)
			continue
		}
		if _, err := e.Compile(context.Background(), bin); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: Compile = %v, want %q…", tc.name, err, want)
		}
	}
}
