// Package c holds tunnel.h, the plugin ABI as a C header. Its test checks
// that every constant of sdk/abi is defined in the header with the same
// value, and that the header defines nothing else.
package c

import (
	"go/constant"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// abiConstants returns sdk/abi's constants by Go name: strings quoted as C
// writes them, numbers in decimal.
func abiConstants(t *testing.T) map[string]string {
	t.Helper()
	consts, err := testkit.Constants("../abi/abi.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, v := range consts {
		if v.Kind() == constant.String {
			out[name] = strconv.Quote(constant.StringVal(v))
		} else {
			out[name] = v.ExactString()
		}
	}
	return out
}

// macro is the C name of a Go constant: ExportABIVersion ->
// TUNNEL_EXPORT_ABI_VERSION, StatusOK -> TUNNEL_STATUS_OK.
func macro(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) &&
			(unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(c))
	}
	return "TUNNEL_" + b.String()
}

var define = regexp.MustCompile(`(?m)^#define\s+(TUNNEL_[A-Z0-9_]+)[ \t]+(.+)$`)

func TestHeaderMatchesABI(t *testing.T) {
	src, err := os.ReadFile("tunnel.h")
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]string{}
	for _, m := range define.FindAllStringSubmatch(string(src), -1) {
		v := strings.TrimSpace(m[2])
		if strings.HasSuffix(v, `\`) || strings.HasPrefix(v, "__attribute__") {
			continue // TUNNEL_IMPORT(name), TUNNEL_EXPORT(name)
		}
		defs[m[1]] = strings.TrimSuffix(strings.TrimPrefix(v, "("), ")")
	}
	want := abiConstants(t)
	if len(want) < 40 {
		t.Fatalf("found only %d constants in sdk/abi", len(want))
	}
	seen := map[string]bool{}
	for name, v := range want {
		m := macro(name)
		seen[m] = true
		got, ok := defs[m]
		switch {
		case !ok:
			t.Errorf("tunnel.h does not define %s (abi.%s = %s)", m, name, v)
		case got != v:
			t.Errorf("tunnel.h: %s is %s, abi.%s is %s", m, got, name, v)
		}
	}
	for m := range defs {
		if !seen[m] {
			t.Errorf("tunnel.h defines %s, which sdk/abi does not have", m)
		}
	}
	// Every import declared uses its name macro, and every name is declared.
	for name := range want {
		if m := macro(name); strings.HasPrefix(name, "Import") && name != "ImportModule" &&
			!strings.Contains(string(src), "TUNNEL_IMPORT("+m+")") {
			t.Errorf("tunnel.h declares no function imported as %s", m)
		}
	}
}
