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
	for _, d := range sorted {
		writeDiagnostic(bw, d, files)
	}
	return bw.Flush()
}

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
			fmt.Fprintf(w, "%*d | %s\n", gutter-2, s.Start.Line, line)
			// Underline from the start to the end of the range, or of the line.
			col := min(s.Start.Byte-start, len(line))
			end := len(line)
			if s.End.Line == s.Start.Line {
				end = min(max(s.End.Byte-start, col), len(line))
			}
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
