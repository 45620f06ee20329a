// Package wasmbuild compiles a built-in plugin's Go sources to the
// WebAssembly module embedded in package builtin, reproducibly: the same
// sources and the same Go release give the same bytes, whatever the
// checkout's path or commit.
package wasmbuild

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Flags are the go build flags of a built-in plugin, after
// GOOS=wasip1 GOARCH=wasm: -trimpath drops the checkout's path,
// -buildvcs=false the commit, and an empty -buildid the hash of the build's
// inputs (go.mod included: a dependency added for the tunnel would change
// it), the things that would otherwise make two checkouts' builds differ.
var Flags = []string{"-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-buildid="}

// Build compiles the Go package main in dir to WebAssembly and returns the
// module's bytes.
func Build(dir string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "wasmbuild-")
	if err != nil {
		return nil, fmt.Errorf("wasmbuild: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "plugin.wasm")
	args := append(append([]string{"build"}, Flags...), "-o", out, ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("wasmbuild: GOOS=wasip1 GOARCH=wasm go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("wasmbuild: %w", err)
	}
	return b, nil
}

// GoVersion is the release of the go command on PATH (go env GOVERSION),
// which Build uses and which the module's bytes depend on.
func GoVersion() (string, error) {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("wasmbuild: go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Compress gzips a module at the best compression, with no name nor time
// in the header, so that equal modules give equal files.
func Compress(wasm []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(wasm); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decompress undoes Compress.
func Decompress(gz []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}
