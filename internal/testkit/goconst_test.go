package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConstants(t *testing.T) {
	write := func(src string) string {
		p := filepath.Join(t.TempDir(), "c.go")
		if err := os.WriteFile(p, []byte("package c\n"+src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := Constants(write(`const (
	A = "x\ty"
	B = -4
	C = 64 << 10
	D = (B + 2) * 3
	E = C | 1
)
var V = 1
const F = D`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": `"x\ty"`, "B": "-4", "C": "65536", "D": "-6", "E": "65537", "F": "-6"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for name, w := range want {
		if v, ok := got[name]; !ok || v.ExactString() != w {
			t.Errorf("%s = %v, want %s", name, v, w)
		}
	}
	for src, msg := range map[string]string{
		"const (\n\tX = 1\n\tY\n)": "Y: a constant without its own value",
		"const I = iota":           "I: unknown name iota",
		"const Z = int32(5)":       "Z: unsupported expression",
		"const W = U + 1":          "W: unknown name U",
		"const S = \"a\" + \"b\"":  "S: unsupported operands of +",
	} {
		if _, err := Constants(write(src)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: error %v, want one containing %q", src, err, msg)
		}
	}
}
