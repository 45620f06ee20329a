package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deepFile is a file whose local nests n lists.
func deepFile(n int) string {
	return "locals {\n  x = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n}\n"
}

// doublingFile doubles a two-element list n times with concat.
func doublingFile(n int) string {
	var b strings.Builder
	b.WriteString("locals {\n  l0 = [1, 2]\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  l%d = concat(local.l%d, local.l%d)\n", i, i-1, i-1)
	}
	b.WriteString("}\n")
	return b.String()
}

// Files crafted to crash or stall the parser get a diagnostic at the place,
// quickly: 60,000 nested lists (which overflowed hcl's parser's stack and
// killed the process), a list doubled 20 times (more than 10 s before),
// nested for expressions, nesting hidden in an interpolation, a file too
// large.
// hangBound is how long a hostile file may take to be refused before the
// test calls it a hang.
const hangBound = 60 * time.Second

func TestParseHostileFiles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src string
		want      string
	}{
		// The locals block is the first level; the 1000th "[" (column
		// 6+1000) the 1001st.
		{"deep", deepFile(60_000), fmt.Sprintf("2:%d: error: Nested too deeply", 6+MaxNesting)},
		{"deep by one", deepFile(MaxNesting), fmt.Sprintf("2:%d: error: Nested too deeply", 6+MaxNesting)},
		{"doubling", doublingFile(20), "18:9: error: Error in function call"},
		{"nested for", "locals {\n  l = [1, 2]\n  x = [for a in local.l : [for b in local.l : b]]\n}\n", "3:27: error: Nested for expression"},
		{"interpolation", "locals {\n  x = \"${" + strings.Repeat("(", 2000) + "1" + strings.Repeat(")", 2000) + "}\"\n}\n", fmt.Sprintf("2:%d: error: Nested too deeply", 8+MaxNesting)},
		{"large", "# " + strings.Repeat("x", MaxConfigFile) + "\n", "1:1: error: Configuration file too large"},
		// Results that are allocated whole before any size check after
		// the call could see them: a terabyte (the process died of it), a
		// gigabyte of padding, a separator repeated.
		{"replace", "locals {\n  s = \"" + strings.Repeat("x", 1000) + "\"\n  s2 = replace(local.s, \"x\", local.s)\n  s3 = replace(local.s2, \"x\", local.s2)\n}\n", "4:8: error: Error in function call"},
		{"format width", "locals {\n  s = format(\"%999999999d\", 1)\n}\n", "2:7: error: Error in function call"},
		{"number", "locals {\n  s = format(\"%f\", 1e10000000)\n}\n", "2:7: error: Error in function call"},
		{"join", "locals {\n  sep = format(\"%0200000d\", 1)\n  l = [" + strings.Repeat("\"a\", ", 40) + "\"a\"]\n  j = join(local.sep, local.l)\n}\n", "4:7: error: Error in function call"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			f, diags := ParseSource([]byte(c.src), "hostile.hcl", Options{})
			// The diagnostics below prove the work was bounded (nesting and
			// value size are checked, not timed); this only catches a
			// hang, so it is generous enough for a loaded machine under
			// the race detector (the unbounded doubling took minutes).
			if d := time.Since(start); d > hangBound {
				t.Errorf("took %v", d)
			}
			var got []string
			for _, d := range diags {
				got = append(got, fmt.Sprintf("%d:%d: %s: %s", d.Subject.Start.Line, d.Subject.Start.Column, severity(d), d.Summary))
			}
			if strings.Join(got, ",") != c.want {
				t.Errorf("diagnostics %q, want %q", got, c.want)
			}
			_ = FormatDiagnostics(diags, f.Files) // prints
		})
	}
	// The doubling file's message names the bound.
	_, diags := ParseSource([]byte(doublingFile(20)), "hostile.hcl", Options{})
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, `Call to function "concat" failed: the result of concat has more than 100000 elements, more than a configuration value may have.`) {
		t.Errorf("doubling: %v", diags)
	}
	_, diags = ParseSource([]byte("locals {\n  s = \""+strings.Repeat("x", 1000)+"\"\n  s2 = replace(local.s, \"x\", local.s)\n  s3 = replace(local.s2, \"x\", local.s2)\n}\n"), "hostile.hcl", Options{})
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, `the result of replace would be a string of about 1000000000000 bytes, more than the 6400000 a configuration value may have`) {
		t.Errorf("replace: %v", diags)
	}
	// Nesting up to the bound still parses.
	if _, diags := ParseSource([]byte(deepFile(MaxNesting-1)), "ok.hcl", Options{}); diags.HasErrors() {
		t.Errorf("%d levels: %v", MaxNesting, diags)
	}
	// Brackets in strings and comments do not count.
	src := "# " + strings.Repeat("[", 2000) + "\nlocals {\n  x = \"" + strings.Repeat("(", 2000) + "\"\n}\n"
	if _, diags := ParseSource([]byte(src), "ok.hcl", Options{}); diags.HasErrors() {
		t.Errorf("brackets in a string and a comment: %v", diags)
	}
}

// A running tunnel that live-reloads one of those files keeps its running
// configuration (and its process).
func TestReloadHostileFileKeepsRunning(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, stampConfig(target, "ok"))
	addr := h.addr()
	c := dial(t, addr)
	for _, src := range []string{deepFile(60_000), doublingFile(20)} {
		start := time.Now()
		writeFile(t, h.path, src)
		r := h.waitReload()
		var le *LoadError
		if !errors.As(r.Err, &le) {
			t.Fatalf("reload = %+v, want a *LoadError", r)
		}
		if d := time.Since(start); d > hangBound {
			t.Errorf("the failed reload took %v", d)
		}
		roundTrip(t, c, "1", `"ok"1`)
		roundTrip(t, dial(t, addr), "2", `"ok"2`)
	}
}

// A busy file next to tunnel.hcl (the tunnel's own log, say) does not put
// off a reload: with a write every millisecond in the directory, an edit of the
// file is applied within the bound of 4 debounce periods (plus the
// reload's own time). Before, every event put the reload off again and
// none happened.
func TestReloadNotStarvedByNeighbour(t *testing.T) {
	target := echoServer(t)
	h := start(t, stampConfig(target, "a"))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.Create(filepath.Join(h.dir, "tunnel.log"))
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				f.WriteString("level=INFO msg=busy\n")
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for i, stamp := range []string{"b", "c", "d"} {
		start := time.Now()
		writeFile(t, h.path, stampConfig(target, stamp))
		r := h.waitReload()
		if r.Err != nil || r.Trigger != "file change" {
			t.Fatalf("edit %d: reload = %+v", i, r)
		}
		// Debounce is 20 ms: at most 80 ms after the first event, plus the
		// reload (compiling is cached) on a loaded machine.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("edit %d applied after %v", i, d)
		}
		roundTrip(t, dial(t, h.addr()), "x", fmt.Sprintf("%q", stamp)+"x")
	}
}

// TestDiagnosticLineShown: the source line of a diagnostic is shown at
// most maxShownLine bytes around the place, its control characters and
// invalid bytes as "?", with the underline still under the place: a
// binary file wrote its bytes, terminal escapes and all, to the terminal.
func TestDiagnosticLineShown(t *testing.T) {
	for _, tc := range []struct {
		line     string
		col, end int
		want     string
		caret    string
	}{
		{`  listen = "x"`, 11, 14, `  listen = "x"`, "           ^^^"},
		{"a\x1b]0;t\x07b = 1", 0, 1, "a?]0;t?b = 1", "^"},
		{"\xff\xfe\x00x", 3, 4, "???x", "   ^"},
		{strings.Repeat("y", 1000) + "ERR" + strings.Repeat("z", 1000), 1000, 1003, "..." + strings.Repeat("y", maxShownLine/3) + "ERR" + strings.Repeat("z", maxShownLine-maxShownLine/3-3) + "...", strings.Repeat(" ", 3+maxShownLine/3) + "^^^"},
	} {
		got, col, end := shownLine(tc.line, tc.col, tc.end)
		caret := strings.Repeat(" ", col) + strings.Repeat("^", end-col)
		if got != tc.want || caret != tc.caret {
			t.Errorf("shownLine(%q, %d, %d) = %q\n%q; want %q\n%q", tc.line, tc.col, tc.end, got, caret, tc.want, tc.caret)
		}
	}
}
