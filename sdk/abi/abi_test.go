package abi

import (
	"go/constant"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// constants returns every constant declared in abi.go with its value as
// written in ABI.md: strings unquoted, numbers in decimal.
func constants(t *testing.T) map[string]string {
	t.Helper()
	consts, err := testkit.Constants("abi.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, v := range consts {
		if v.Kind() == constant.String {
			out[name] = constant.StringVal(v)
		} else {
			out[name] = v.ExactString()
		}
	}
	return out
}

// rows returns the table rows of ABI.md whose first cell is a `Name`:
// name -> second cell without backticks.
func rows(t *testing.T) map[string][]string {
	t.Helper()
	doc, err := os.ReadFile("../ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_]+)` \\| ([^|]+) \\|")
	out := map[string][]string{}
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		out[m[1]] = append(out[m[1]], strings.Trim(strings.TrimSpace(m[2]), "`"))
	}
	return out
}

// TestDocumentMatchesConstants keeps sdk/ABI.md and abi.go in step: every
// constant appears in a table of the document with the same value, exactly
// once, and every name in the tables is a constant.
func TestDocumentMatchesConstants(t *testing.T) {
	consts := constants(t)
	doc := rows(t)
	if len(consts) < 30 {
		t.Fatalf("found only %d constants in abi.go; the parser is broken", len(consts))
	}
	for name, want := range consts {
		got, ok := doc[name]
		switch {
		case !ok:
			t.Errorf("constant %s = %s is not in a table of ABI.md", name, want)
		case len(got) != 1:
			t.Errorf("constant %s appears %d times in the tables of ABI.md", name, len(got))
		case got[0] != want:
			t.Errorf("ABI.md says %s is %q, abi.go says %q", name, got[0], want)
		}
	}
	for name := range doc {
		if _, ok := consts[name]; !ok {
			t.Errorf("ABI.md has a row for %s, which abi.go does not declare", name)
		}
	}
}

// TestWATSignaturesDocumented checks that every export and import named in
// abi.go has its WAT signature in ABI.md.
func TestWATSignaturesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	for _, name := range []string{ExportABIVersion, ExportInit, ExportOnOpen, ExportOnData, ExportOnClose, ExportOnTimer} {
		if !strings.Contains(s, `(func (export "`+name+`")`) {
			t.Errorf("ABI.md has no WAT signature for export %s", name)
		}
	}
	for _, name := range []string{ImportInputBuffer, ImportConfig, ImportConfigError, ImportConnInfo, ImportSend, ImportCloseWrite, ImportClose, ImportLog, ImportNow, ImportSetTimer, ImportSetTarget, ImportSetTag, ImportGetTag, ImportDeferEnd,
		ImportStateGet, ImportStateSet, ImportStateDelete, ImportStateCAS, ImportStateAdd,
		ImportMetricDefine, ImportMetricAdd, ImportMetricSet, ImportMetricObserve} {
		if !strings.Contains(s, `(import "`+ImportModule+`" "`+name+`" (func`) {
			t.Errorf("ABI.md has no WAT signature for import %s", name)
		}
	}
}
