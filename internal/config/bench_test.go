package config

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

// BenchmarkParse: decoding and checking the repository's tunnel.hcl.
func BenchmarkParse(b *testing.B) {
	opts := Options{LookupEnv: func(string) (string, bool) { return "", false }}
	for b.Loop() {
		if _, diags := Parse("../../tunnel.hcl", opts); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

// BenchmarkReload: one full reload of a one-route file with a WAT guest:
// parse, hash the files, reuse the compiled module, instantiate the plugin,
// apply, release the previous plugin.
func BenchmarkReload(b *testing.B) {
	dir := b.TempDir()
	copyFile(b, "testdata/wasm/stamp.wasm", filepath.Join(dir, "plugin.wasm"))
	path := filepath.Join(dir, "tunnel.hcl")
	writeFile(b, path, stampConfig("127.0.0.1:1", "x"))
	r := &Runner{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for b.Loop() {
		if err := r.Reload(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
