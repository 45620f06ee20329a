package plugins_test

import (
	"fmt"
	"os"
	"regexp"
	"testing"

	"github.com/tunnelwasm/tunnel/examples/plugins/internal/wasmtest"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// TestSizesDoc measures each example's .wasm size and the linear memory of
// one instance after tunnel_init (the smallest memory_limit it starts
// under), next to the Go plugin it is compared with, and checks the table
// in plugins/README.md says the same.
func TestSizesDoc(t *testing.T) {
	readme, err := os.ReadFile("../../plugins/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, builtin, config string }{
		{"c-deny", "c-deny/c-deny.wasm", "", denyConfig},
		{"rust-upper", "rust-upper/rust-upper.wasm", "", ""},
		{"as-redact", "as-redact/as-redact.wasm", "", ""},
		{"deny (Go)", "", "deny", denyConfig},
	} {
		var b []byte
		if tc.path != "" {
			if b, err = os.ReadFile(tc.path); err != nil {
				t.Fatal(err)
			}
		} else if b, err = builtin.Wasm(tc.builtin); err != nil {
			t.Fatal(err)
		}
		pages := wasmtest.InstanceMemory(t, wasmtest.ModuleBytes(t, b), tc.config)
		row := fmt.Sprintf("| %s | %s | %d KiB |", tc.name, size(len(b)), pages*64)
		t.Log(row)
		if !regexp.MustCompile(regexp.QuoteMeta(row)).Match(readme) {
			t.Errorf("plugins/README.md has no row starting %q", row)
		}
	}
}

// size is n bytes as the README writes it: KiB below 1 MiB, else MiB.
func size(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
}
