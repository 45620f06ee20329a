// Command gen rebuilds the modules package builtin embeds: for each
// built-in plugin it compiles ../NAME (run by go generate in
// plugins/builtin) with wasmbuild.Flags and writes wasm/NAME.wasm.gz, then
// records the Go release in wasm/GOVERSION.
//
//	go generate ./plugins/builtin
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tunnelwasm/tunnel/plugins/builtin"
	"github.com/tunnelwasm/tunnel/plugins/builtin/internal/wasmbuild"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	version, err := wasmbuild.GoVersion()
	if err != nil {
		return err
	}
	for _, name := range builtin.Names() {
		wasm, err := wasmbuild.Build(filepath.Join("..", name))
		if err != nil {
			return err
		}
		gz, err := wasmbuild.Compress(wasm)
		if err != nil {
			return fmt.Errorf("compressing %s: %w", name, err)
		}
		out := filepath.Join("wasm", name+".wasm.gz")
		if err := os.WriteFile(out, gz, 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: %d bytes, %d gzipped\n", out, len(wasm), len(gz))
	}
	return os.WriteFile(filepath.Join("wasm", "GOVERSION"), []byte(version+"\n"), 0o644)
}
