package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints diags in source order, each as
//
//	FILE:LINE:COL: error: SUMMARY
//	   LINE | the source line
//	        |       ^^^^^
//	        hint: what is wrong and how to fix it
//
// ("warning:" for warnings). files supplies the source lines (see
// [File.Files]); a diagnostic without a position prints only its first line
// and hint.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, files map[string]*hcl.File) error {
	sorted := append(hcl.Diagnostics(nil), diags...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].Subject, sorted[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	bw := bufio.NewWriter(w)
	for i, d := range sorted {
		if i == maxWrittenDiags && len(sorted) > i+1 {
			// A binary file makes hundreds: the first say what is wrong.
			fmt.Fprintf(bw, "... and %d more diagnostic(s) not shown: fix the ones above first\n", len(sorted)-i)
			break
		}
		writeDiagnostic(bw, d, files)
	}
	return bw.Flush()
}

// maxWrittenDiags is the most diagnostics WriteDiagnostics prints.
const maxWrittenDiags = 50

// FormatDiagnostics is WriteDiagnostics into a string.
func FormatDiagnostics(diags hcl.Diagnostics, files map[string]*hcl.File) string {
	var sb strings.Builder
	WriteDiagnostics(&sb, diags, files)
	return sb.String()
}

func severity(d *hcl.Diagnostic) string {
	if d.Severity == hcl.DiagWarning {
		return "warning"
	}
	return "error"
}

func writeDiagnostic(w *bufio.Writer, d *hcl.Diagnostic, files map[string]*hcl.File) {
	s := d.Subject
	if s == nil {
		fmt.Fprintf(w, "%s: %s\n", severity(d), d.Summary)
		if d.Detail != "" {
			fmt.Fprintf(w, "  hint: %s\n", oneLine(d.Detail))
		}
		return
	}
	fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, severity(d), d.Summary)
	gutter := len(fmt.Sprint(s.Start.Line)) + 4
	pad := strings.Repeat(" ", gutter)
	if f := files[s.Filename]; f != nil {
		if line, start, ok := sourceLine(f.Bytes, s.Start.Byte); ok {
			// Underline from the start to the end of the range, or of the line.
			col := min(s.Start.Byte-start, len(line))
			end := len(line)
			if s.End.Line == s.Start.Line {
				end = min(max(s.End.Byte-start, col), len(line))
			}
			line, col, end = shownLine(line, col, end)
			fmt.Fprintf(w, "%*d | %s\n", gutter-2, s.Start.Line, line)
			var caret strings.Builder
			for _, r := range line[:col] {
				if r == '\t' {
					caret.WriteByte('\t')
				} else {
					caret.WriteByte(' ')
				}
			}
			caret.WriteString(strings.Repeat("^", max(1, utf8.RuneCountInString(line[col:end]))))
			fmt.Fprintf(w, "%s| %s\n", pad[:gutter-1], caret.String())
		}
	}
	if d.Detail != "" {
		fmt.Fprintf(w, "%shint: %s\n", pad[:gutter-1], oneLine(d.Detail))
	}
}

// maxShownLine is the most of a source line a diagnostic shows, in bytes.
const maxShownLine = 160

// shownLine is the part of line a diagnostic shows, with col and end (byte
// offsets of the underlined range) moved into it: at most maxShownLine
// bytes around col, "..." where it was cut, and every control character
// and invalid byte as "?" (one column each, so the underline stays under
// its place), so that a binary file or a 4 MiB line prints a line, not
// its bytes: terminal escapes included.
func shownLine(line string, col, end int) (string, int, int) {
	from, to := 0, len(line)
	if len(line) > maxShownLine {
		from = max(0, col-maxShownLine/3)
		to = min(len(line), from+maxShownLine)
		for from > 0 && !utf8.RuneStart(line[from]) {
			from--
		}
		for to < len(line) && !utf8.RuneStart(line[to]) {
			to--
		}
	}
	var b strings.Builder
	if from > 0 {
		b.WriteString("...")
	}
	newCol, newEnd := -1, -1
	for i, r := range line[from:to] {
		if from+i >= col && newCol < 0 {
			newCol = b.Len()
		}
		if from+i >= end && newEnd < 0 {
			newEnd = b.Len()
		}
		switch {
		case r == '\t':
			b.WriteByte('\t')
		case r == utf8.RuneError || r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	if newCol < 0 {
		newCol = b.Len()
	}
	if newEnd < 0 {
		newEnd = b.Len()
	}
	if to < len(line) {
		b.WriteString("...")
	}
	return b.String(), newCol, max(newEnd, newCol)
}

// sourceLine returns the line of src holding byte offset off, without its
// newline, and the offset where it starts.
func sourceLine(src []byte, off int) (string, int, bool) {
	if off < 0 || off > len(src) {
		return "", 0, false
	}
	start := bytes.LastIndexByte(src[:off], '\n') + 1
	end := bytes.IndexByte(src[off:], '\n')
	if end < 0 {
		end = len(src)
	} else {
		end += off
	}
	return strings.TrimRight(string(src[start:end]), "\r"), start, true
}

// oneLine puts a possibly multi-line text on one line, lines joined by "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
