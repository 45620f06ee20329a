// Package builtin is the plugins of the repository's plugins/ directory
// (noop, dump, replace, deny, codec, toxics, router, resp, redact,
// ratelimit), compiled to WebAssembly and embedded
// in every binary that imports this package, so that tunnel.hcl's
// `builtin = "deny"` and the CLI's `--plugin builtin:deny` need no file on
// disk.
//
// The modules are built from the Go sources next to this package by
// `go generate ./plugins/builtin` (reproducibly: see package
// internal/wasmbuild) and committed gzipped under wasm/. A test rebuilds
// them and fails when a committed module differs from its sources.
package builtin

import (
	"embed"
	"fmt"
	"sort"
	"strings"

	"github.com/tunnelwasm/tunnel/plugins/builtin/internal/wasmbuild"
)

//go:generate go run ./gen

//go:embed wasm
var files embed.FS

// Prefix marks a built-in plugin where a .wasm path is expected, as in the
// CLI's --plugin builtin:deny.
const Prefix = "builtin:"

// descriptions are the built-in plugins, by name: what each does, in one
// line (as in plugins/README.md).
var descriptions = map[string]string{
	"noop":      "forwards everything; the baseline for benchmarks",
	"replace":   "find/replace byte strings, also across chunk boundaries",
	"deny":      "blocks patterns (e.g. FLUSHALL): drop and reply, or close",
	"codec":     "base64 or XOR encode/decode pair between two tunnels",
	"dump":      "hex or text dump of every chunk to stdout or the log",
	"toxics":    "network faults per direction: latency, bandwidth, slicer, slow close, timeout, reset; by probability or trigger",
	"router":    "chooses the target from the first bytes: TLS SNI, HTTP Host, SSH, Redis (dial = \"plugin\")",
	"resp":      "Redis filter parsing RESP: blocks (error reply, connection kept) or renames commands",
	"redact":    "masks card numbers (Luhn), bearer tokens and literals in either direction, across chunks",
	"ratelimit": "per client IP: connections and bytes per second (shared state), reply and close or delay",
}

// Names returns the names of the built-in plugins, sorted.
func Names() []string {
	names := make([]string, 0, len(descriptions))
	for n := range descriptions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Description returns what the built-in plugin name does, in one line, or
// "" when there is no such plugin.
func Description(name string) string { return descriptions[name] }

// UnknownError is returned for a name that is not a built-in plugin.
type UnknownError struct{ Name string }

// Error names the plugin asked for and lists the built-in ones.
func (e *UnknownError) Error() string {
	return fmt.Sprintf("no built-in plugin %q; the built-in plugins are %s", e.Name, strings.Join(Names(), ", "))
}

// Wasm returns the WebAssembly module of the built-in plugin name, a fresh
// copy the caller may keep (about 3 MB; decompressing it takes about
// 10 ms). An unknown name gives an *UnknownError.
func Wasm(name string) ([]byte, error) {
	if _, ok := descriptions[name]; !ok {
		return nil, &UnknownError{Name: name}
	}
	gz, err := files.ReadFile("wasm/" + name + ".wasm.gz")
	if err != nil {
		return nil, fmt.Errorf("built-in plugin %q is not embedded in this binary (run go generate ./plugins/builtin): %w", name, err)
	}
	wasm, err := wasmbuild.Decompress(gz)
	if err != nil {
		return nil, fmt.Errorf("built-in plugin %q: decompressing: %w", name, err)
	}
	return wasm, nil
}
