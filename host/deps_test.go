package host_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNoPluginRuntimeDeps: package host does not depend on the WebAssembly
// runtime (wazero, or anything of host/plugin), on any of the systems it is
// built for, so a binary that only proxies does not link it.
func TestNoPluginRuntimeDeps(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		cmd := exec.Command(gobin, "list", "-deps", "-json=ImportPath", ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOFLAGS=")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("GOOS=%s go list: %v\n%s", goos, err, ee.Stderr)
			}
			t.Fatalf("GOOS=%s go list: %v", goos, err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		n := 0
		for {
			var pkg struct{ ImportPath string }
			if err := dec.Decode(&pkg); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("GOOS=%s go list output: %v", goos, err)
			}
			n++
			if strings.Contains(pkg.ImportPath, "wazero") || strings.HasPrefix(pkg.ImportPath, "github.com/tunnelwasm/tunnel/host/plugin") ||
				strings.HasPrefix(pkg.ImportPath, "github.com/tunnelwasm/tunnel/host/internal/wasm") {
				t.Errorf("GOOS=%s: package host depends on %s", goos, pkg.ImportPath)
			}
		}
		if n < 10 {
			t.Fatalf("GOOS=%s: go list printed %d packages; the check saw nothing", goos, n)
		}
	}
}
