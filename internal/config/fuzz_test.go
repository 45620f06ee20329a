package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes Parse panic, and whatever it reports prints.
// The seeds are the test files; `go test -fuzz FuzzParse` explores further.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/errors/*.hcl")
	seeds = append(seeds, "../../tunnel.hcl")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	opts := Options{LookupEnv: func(string) (string, bool) { return "", false }}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := ParseSource(src, filepath.Join(dir, "fuzz.hcl"), opts)
		_ = FormatDiagnostics(diags, file.Files)
	})
}
