package precompile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMain does the precompilation when asked through the environment, and
// runs the tests otherwise.
func TestMain(m *testing.M) {
	dir, file := os.Getenv("PRECOMPILE_CACHE"), os.Getenv("PRECOMPILE_MODULE")
	if dir != "" && file != "" {
		if err := Into(dir, file); err != nil {
			fmt.Fprintln(os.Stderr, "precompile:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestInto(t *testing.T) {
	dir := t.TempDir()
	if err := Into(dir, "../../../plugin/testdata/noop.wasm"); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
	if len(files) != 1 {
		t.Fatalf("cache holds %q, want one compiled module", files)
	}
	if err := Into(dir, "missing.wasm"); err == nil {
		t.Fatal("no error for a missing file")
	}
}
