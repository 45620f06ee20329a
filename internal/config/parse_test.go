package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
)

// expectedDiags reads the "# ERROR: summary" / "# WARNING: summary" marks of
// a test file (several per line allowed), as "line: severity: summary".
func expectedDiags(t *testing.T, path string) []string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mark := regexp.MustCompile(`#\s*(ERROR|WARNING):\s*([^#]*)`)
	var want []string
	for i, line := range strings.Split(string(src), "\n") {
		for _, m := range mark.FindAllStringSubmatch(line, -1) {
			want = append(want, fmt.Sprintf("%d: %s: %s", i+1, strings.ToLower(m[1]), strings.TrimSpace(m[2])))
		}
	}
	sort.Strings(want)
	return want
}

func gotDiags(diags hcl.Diagnostics) []string {
	var got []string
	for _, d := range diags {
		line := 0
		if d.Subject != nil {
			line = d.Subject.Start.Line
		}
		got = append(got, fmt.Sprintf("%d: %s: %s", line, severity(d), d.Summary))
	}
	sort.Strings(got)
	return got
}

func checkMarks(t *testing.T, path string, diags hcl.Diagnostics, files map[string]*hcl.File) {
	t.Helper()
	want, got := expectedDiags(t, path), gotDiags(diags)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("%s: diagnostics differ from the marks in the file\nwant:\n  %s\ngot:\n  %s\nfull output:\n%s",
			path, strings.Join(want, "\n  "), strings.Join(got, "\n  "), FormatDiagnostics(diags, files))
	}
}

var update = flag.Bool("update", false, "rewrite testdata/errors/*.golden from the current output")

// TestParseErrors checks every file in testdata/errors reports exactly the
// diagnostics marked on its lines, and nothing else, and prints them exactly
// as its .golden file shows (go test -run TestParseErrors -update rewrites
// those after a deliberate change).
func TestParseErrors(t *testing.T) {
	t.Setenv("TUNNEL_TEST_UNSET_VARIABLE", "")
	os.Unsetenv("TUNNEL_TEST_UNSET_VARIABLE")
	files, _ := filepath.Glob("testdata/errors/*.hcl")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, diags := Parse(path, Options{})
			if !diags.HasErrors() {
				t.Fatalf("no errors reported")
			}
			checkMarks(t, path, diags, f.Files)
			got := FormatDiagnostics(diags, f.Files)
			golden := strings.TrimSuffix(path, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s:\n%s", golden, got)
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reply.txt"), []byte("-ERR no\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `
locals {
  loopback = "127.0.0.1"
  dir      = "plugins"
}
plugin "deny" {
  path         = "${local.dir}/deny.wasm"
  memory_limit = "32MiB"
  call_timeout = "250ms"
  max_output   = "128KiB"
  on_failure   = "bypass"
  trusted      = false
  instances    = 3
  stdout       = true
}
plugin "abs" {
  path    = "/opt/x.wasm"
  trusted = true
}
route "r1" {
  listen          = "${local.loopback}:${env("PORT")}"
  target          = env("UNSET_TARGET", "localhost:6379")
  dial_timeout    = "2s"
  idle_timeout    = "5m"
  max_connections = 10
  dump {
    format = "hex"
  }
  chain {
    plugin     = plugin.deny
    directions = "client_to_server"
    config     = { pattern = upper("flushall"), reply = file("reply.txt"), n = 3, list = [1, true, null] }
  }
  chain {
    plugin = "abs"
    directions = "server_to_client"
  }
}
route "r2" {
  listen = "[::1]:9091"
  target = "127.0.0.1:8080"
  dump {
    enabled = false
  }
  chain {
    plugin = plugin.deny
    config = jsondecode("{\"a\": \"b\"}")
  }
}
`
	env := map[string]string{"PORT": "7000"}
	f, diags := ParseSource([]byte(src), filepath.Join(dir, "t.hcl"), Options{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", FormatDiagnostics(diags, f.Files))
	}
	deny := f.Plugin("deny")
	wantDeny := Plugin{Name: "deny", Path: filepath.Join(dir, "plugins/deny.wasm"), MemoryLimit: 32 << 20, CallTimeout: 250 * time.Millisecond,
		MaxOutput: 128 << 10, FailOpen: true, Instances: 3, Stdout: true}
	wantDeny.DeclRange, wantDeny.PathRange = deny.DeclRange, deny.PathRange
	if *deny != wantDeny {
		t.Errorf("plugin deny = %+v\nwant %+v", *deny, wantDeny)
	}
	if deny.PathRange.Start.Line != 7 || deny.DeclRange.Start.Line != 6 {
		t.Errorf("deny ranges: decl %v path %v", deny.DeclRange, deny.PathRange)
	}
	if p := f.Plugin("abs"); p.Path != "/opt/x.wasm" || !p.Trusted || p.FailOpen || p.MemoryLimit != 0 || p.MaxOutput != 0 || p.Instances != 0 {
		t.Errorf("plugin abs = %+v", *p)
	}
	r1 := f.Route("r1")
	if r1.Listen != "127.0.0.1:7000" || r1.Target != "localhost:6379" || r1.DialTimeout != 2*time.Second ||
		r1.IdleTimeout != 5*time.Minute || r1.MaxConns != 10 || r1.Dump == nil || r1.Dump.Format != "hex" || len(r1.Chain) != 2 {
		t.Errorf("route r1 = %+v", *r1)
	}
	l := r1.Chain[0]
	if l.Plugin != "deny" || l.Directions != host.OnlyClientToServer || l.ConfigRange.Start.Line != 32 {
		t.Errorf("r1 link 1 = %+v", *l)
	}
	if want := `{"list":[1,true,null],"n":3,"pattern":"FLUSHALL","reply":"-ERR no\r\n"}`; string(l.Config) != want {
		t.Errorf("config JSON = %s\nwant        %s", l.Config, want)
	}
	if l := r1.Chain[1]; l.Plugin != "abs" || l.Directions != host.OnlyServerToClient || l.Config != nil || l.ConfigRange != l.DeclRange {
		t.Errorf("r1 link 2 = %+v", *l)
	}
	r2 := f.Route("r2")
	if r2.Dump != nil || r2.Chain[0].Directions != host.Both || string(r2.Chain[0].Config) != `{"a":"b"}` || r2.DialTimeout != 0 {
		t.Errorf("route r2 = %+v, link %+v", *r2, *r2.Chain[0])
	}
}

func TestParseMissingFile(t *testing.T) {
	t.Parallel()
	f, diags := Parse(filepath.Join(t.TempDir(), "none.hcl"), Options{})
	if len(diags) != 1 || diags[0].Summary != "Cannot read configuration file" || f == nil {
		t.Fatalf("diags = %v", diags)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{"1B": 1, "64MiB": 64 << 20, "64 MiB": 64 << 20, "2GiB": 2 << 30, "10KB": 10000, "3KiB": 3072, "1GB": 1e9} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5MiB", "-1MiB", "64", "64mb", "99999999999999999999GiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestDurationSpaces: a duration may have spaces around it, as a size may
// (" 64 MiB "); " 5s " was "not a duration".
func TestDurationSpaces(t *testing.T) {
	t.Parallel()
	src := "route \"a\" {\n  listen = \"127.0.0.1:7000\"\n  target = \"127.0.0.1:8080\"\n  idle_timeout = \" 5s \"\n}\n"
	f, diags := ParseSource([]byte(src), "t.hcl", Options{})
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", FormatDiagnostics(diags, f.Files))
	}
	if r := f.Route("a"); r.IdleTimeout != 5*time.Second {
		t.Errorf("idle_timeout = %v, want 5s", r.IdleTimeout)
	}
}

// TestDiagnosticFormat pins the exact text layout of a diagnostic.
func TestDiagnosticFormat(t *testing.T) {
	t.Parallel()
	src := "route \"a\" {\n\tlisten = \"127.0.0.1\"\n  target = \"127.0.0.1:8080\"\n  colour = 1\n}\n"
	f, diags := ParseSource([]byte(src), "dir/t.hcl", Options{})
	got := FormatDiagnostics(diags, f.Files)
	want := `dir/t.hcl:2:11: error: Invalid listen address
  2 | 	listen = "127.0.0.1"
    | 	         ^^^^^^^^^^^
    hint: address "127.0.0.1" is not host:port: address 127.0.0.1: missing port in address.
dir/t.hcl:4:3: error: Unsupported argument
  4 |   colour = 1
    |   ^^^^^^
    hint: An argument named "colour" is not expected here.
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
