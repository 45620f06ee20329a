package testkit

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocNames: every exported function, method and type of the module's
// packages (their files other than tests) has a doc comment that begins
// with its name. Plugin.GuestMetrics and Registry.GuestMetrics were
// documented as "Metrics returns ...", which go doc shows under
// GuestMetrics, next to the Metrics that returns something else.
func TestDocNames(t *testing.T) {
	t.Parallel()
	root := "../.."
	dirs := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if n := d.Name(); p != root && (n == "testdata" || n == "node_modules" || strings.HasPrefix(n, ".")) {
			return filepath.SkipDir
		}
		bad, err := docNames(p)
		if err != nil {
			return err
		}
		dirs++
		for _, b := range bad {
			t.Errorf("%s: %s", p, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dirs < 40 {
		t.Fatalf("checked %d directories from %s, want the module's 40 or more", dirs, root)
	}
}

// docNames returns the exported functions, methods and types of the Go
// package in dir (its files other than tests) whose doc comment is missing
// or does not begin with their name (or "A", "An" or "The" and their
// name), each as "Name: what is wrong". go doc shows a comment under the
// name it documents: one that begins with another name, as a rename
// leaves it, says what the other one does.
func docNames(dir string) ([]string, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var bad []string
	check := func(recv, name, text string) {
		if !ast.IsExported(name) {
			return
		}
		full := name
		if recv != "" {
			full = recv + "." + name
		}
		w := strings.Fields(text)
		switch {
		case len(w) == 0:
			bad = append(bad, full+": no doc comment")
		case strings.TrimRight(w[0], ":,") == name:
		case len(w) > 1 && (w[0] == "A" || w[0] == "An" || w[0] == "The") && strings.TrimRight(w[1], ":,") == name:
		default:
			bad = append(bad, full+": the doc comment begins "+strings.Join(w[:min(3, len(w))], " ")+"...")
		}
	}
	for _, p := range pkgs {
		d := doc.New(p, dir, 0)
		for _, f := range d.Funcs {
			check("", f.Name, f.Doc)
		}
		for _, t := range d.Types {
			check("", t.Name, t.Doc)
			for _, f := range t.Funcs {
				check("", f.Name, f.Doc)
			}
			for _, m := range t.Methods {
				check(t.Name, m.Name, m.Doc)
			}
		}
	}
	return bad, nil
}
