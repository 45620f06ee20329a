// Package precompile fills a wazero compilation cache directory with a
// plugin module compiled the way plugin.Runtime compiles it, so that a later
// Runtime using the same directory loads the machine code instead of
// compiling it.
//
// plugintest uses it when its tests are built with -race: the race detector
// slows wazero's compiler down about ten times (~30 s for a Go guest). It
// runs this package's test binary, uninstrumented, with
//
//	PRECOMPILE_CACHE=dir PRECOMPILE_MODULE=file.wasm go test -count=1 -run '^$' .../precompile
//
// A test binary, because wazero names its cache directory after its own
// version, which test binaries report as "dev": only another test binary
// writes where the tests will look.
package precompile

import (
	"context"
	"os"

	"github.com/tunnelwasm/tunnel/host/internal/wasm"
)

// Into compiles the module in file into the cache directory dir.
func Into(dir, file string) error {
	bin, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ctx := context.Background()
	eng, err := wasm.NewEngine(dir)
	if err != nil {
		return err
	}
	defer eng.Close(ctx)
	c, err := eng.Compile(ctx, bin)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}
