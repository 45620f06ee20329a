package wasm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

// FuzzInstrument: instrument never panics, and when it accepts a module that
// wazero accepts, wazero accepts the instrumented module too. Seeds are the
// test guests; `go test` runs just them, `go test -fuzz FuzzInstrument`
// explores.
func FuzzInstrument(f *testing.F) {
	files, _ := filepath.Glob("../../plugin/testdata/*.wasm")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, err := instrument(bin)
		if err != nil {
			return
		}
		cm, err := rt.CompileModule(ctx, bin)
		if err != nil {
			return // invalid input: nothing promised
		}
		cm.Close(ctx)
		cm, err = rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("the instrumented form of a valid module is invalid: %v", err)
		}
		cm.Close(ctx)
	})
}
