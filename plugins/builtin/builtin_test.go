package builtin_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
	"github.com/tunnelwasm/tunnel/plugins/builtin/internal/wasmbuild"
)

// unpackedModules holds what builtin.Wasm returned for each name, for the
// tests of this binary that look at the same modules: unpacking one takes
// about 0.5 s under -race. They only read the bytes.
var unpackedModules sync.Map // name -> []byte

// unpacked is builtin.Wasm(name), unpacked once per test binary.
func unpacked(t *testing.T, name string) []byte {
	t.Helper()
	if b, ok := unpackedModules.Load(name); ok {
		return b.([]byte)
	}
	b, err := builtin.Wasm(name)
	if err != nil {
		t.Fatal(err)
	}
	unpackedModules.Store(name, b)
	return b
}

// TestEmbeddedModulesMatchSources rebuilds every built-in plugin from its
// Go sources and fails when the embedded module differs: a change to
// plugins/NAME, package sdk or the Go release must come with
// `go generate ./plugins/builtin`. Under CI it always runs; elsewhere a Go
// release other than the one recorded in wasm/GOVERSION skips it (its
// modules would differ by the release alone).
func TestEmbeddedModulesMatchSources(t *testing.T) {
	recorded, err := os.ReadFile("wasm/GOVERSION")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(recorded))
	have, err := wasmbuild.GoVersion()
	if err != nil {
		t.Fatal(err)
	}
	if have != want {
		msg := "the embedded plugins were built with " + want + ", the go command here is " + have +
			": the modules differ by the release alone; with " + want + " (or after `go generate ./plugins/builtin` and a commit) this test compares them"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// The first build alone: on a cold Go build cache it compiles the
	// standard library for wasip1, which the others then reuse (ten
	// builds side by side would each compile it); then the others side
	// by side, mostly linking (plugintest.Build runs them so once one has
	// succeeded).
	for i, name := range builtin.Names() {
		t.Run(name, func(t *testing.T) {
			if i > 0 {
				t.Parallel()
			}
			// plugintest.Build makes the module as go generate does
			// (wasmbuild.Flags; a difference would fail this test) and
			// shares it with the plugin's own tests in the same run.
			fresh := plugintest.Build(t, filepath.Join("..", name))
			embedded := unpacked(t, name)
			if !bytes.Equal(fresh, embedded) {
				t.Errorf("wasm/%s.wasm.gz (%d bytes unpacked) is stale: plugins/%s builds to %d other bytes; run `go generate ./plugins/builtin` and commit plugins/builtin/wasm", name, len(embedded), name, len(fresh))
			}
		})
	}
}

// TestEveryPluginIsBuiltIn checks that the built-ins are exactly the plugin
// directories of plugins/, each described as in plugins/README.md's table.
func TestEveryPluginIsBuiltIn(t *testing.T) {
	mains, err := filepath.Glob("../*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, m := range mains {
		dirs = append(dirs, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(dirs)
	if got := builtin.Names(); strings.Join(got, " ") != strings.Join(dirs, " ") {
		t.Errorf("Names() = %q, want the plugins with a main.go in plugins/: %q", got, dirs)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range builtin.Names() {
		d := strings.ReplaceAll(builtin.Description(name), "FLUSHALL", "`FLUSHALL`")
		if !bytes.Contains(readme, []byte(" | "+d+" |")) {
			t.Errorf("plugins/README.md's table does not describe %s as %q", name, d)
		}
	}
}

func TestUnknownName(t *testing.T) {
	_, err := builtin.Wasm("dney")
	var ue *builtin.UnknownError
	if !errors.As(err, &ue) || ue.Name != "dney" {
		t.Fatalf("Wasm(dney) = %v, want an *UnknownError", err)
	}
	const want = `no built-in plugin "dney"; the built-in plugins are codec, deny, dump, noop, ratelimit, redact, replace, resp, router, toxics`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if builtin.Description("dney") != "" {
		t.Error("an unknown plugin has a description")
	}
}

func TestWasmIsAModule(t *testing.T) {
	for _, name := range builtin.Names() {
		b := unpacked(t, name)
		if !bytes.HasPrefix(b, []byte("\x00asm\x01\x00\x00\x00")) {
			t.Errorf("%s: %q… is not a WebAssembly module", name, b[:8])
		}
	}
}

// BenchmarkWasm is the cost of unpacking one embedded module (figures in
// RATIONALE.md).
func BenchmarkWasm(b *testing.B) {
	for b.Loop() {
		if _, err := builtin.Wasm("replace"); err != nil {
			b.Fatal(err)
		}
	}
}
