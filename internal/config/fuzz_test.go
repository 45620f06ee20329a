package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// fuzzParseBound is how long one file may take to parse and evaluate
// under the fuzzer before it counts as a hang: every file that is parsed
// (validate, each live reload) must come back with a verdict, and the
// bounds of harden.go keep the hostile ones under 5 s on a busy machine.
const fuzzParseBound = 20 * time.Second

// FuzzParse is `tunnel validate`'s reading of a file on mutated files: no
// input makes ParseSource panic or hang (fuzzParseBound), whatever it
// reports has a position inside the file and prints, and a file it finds no
// error in parses again to the same result. Seeds: every .hcl file of the
// repository (tunnel.hcl, the CLI's and this package's test files) and the
// hostile files of TestParseHostileFiles, cut down to fuzzing size. `go
// test` runs the seeds; .ci/run fuzzes briefly; `go test -fuzz FuzzParse
// ./internal/config` explores further.
//
// Build (which compiles the plugins, opens capture and key log files and
// reads certificates, at paths the file names) is not fuzzed: its input is
// a File that ParseSource has checked, and what it does with it touches
// the file system, which a fuzzer must not be let loose on.
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"testdata/*/*.hcl", "../../*.hcl", "../../cmd/tunnel/testdata/*.hcl"} {
		m, _ := filepath.Glob(pattern)
		seeds = append(seeds, m...)
	}
	if len(seeds) < 10 {
		f.Fatalf("only %d seed files", len(seeds))
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, src := range []string{
		deepFile(MaxNesting + 1),
		doublingFile(12),
		"locals {\n  l = [1, 2]\n  x = [for a in local.l : [for b in local.l : b]]\n}\n",
		"locals {\n  x = \"${" + strings.Repeat("(", MaxNesting+1) + "1" + strings.Repeat(")", MaxNesting+1) + "}\"\n}\n",
		"locals {\n  s = \"${local.s}\"\n}\n",
		"route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:1\"\n  max_conns = 1e400\n}\n",
	} {
		f.Add([]byte(src))
	}
	dir := f.TempDir()
	opts := Options{LookupEnv: func(string) (string, bool) { return "", false }}
	name := filepath.Join(dir, "fuzz.hcl")
	f.Fuzz(func(t *testing.T, src []byte) {
		start := time.Now()
		file, diags := ParseSource(src, name, opts)
		if d := time.Since(start); d > fuzzParseBound {
			t.Fatalf("parsing %d bytes took %v", len(src), d)
		}
		if file == nil {
			t.Fatal("no File")
		}
		for _, d := range diags {
			if d.Subject != nil && (d.Subject.Filename != name || d.Subject.Start.Byte > len(src) || d.Subject.End.Byte > len(src)) {
				t.Fatalf("diagnostic %q at %s:%d-%d, outside the %d-byte file", d.Summary, d.Subject.Filename, d.Subject.Start.Byte, d.Subject.End.Byte, len(src))
			}
		}
		_ = FormatDiagnostics(diags, file.Files)
		if diags.HasErrors() {
			return
		}
		// A valid file is read the same way every time (a reload of an
		// unchanged file changes nothing).
		again, diags2 := ParseSource(src, name, opts)
		if diags2.HasErrors() || len(again.Routes) != len(file.Routes) || len(again.Plugins) != len(file.Plugins) {
			t.Fatalf("parsed again: %d routes, %d plugins (%v); first %d, %d", len(again.Routes), len(again.Plugins), hcl.Diagnostics(diags2).Errs(), len(file.Routes), len(file.Plugins))
		}
	})
}
