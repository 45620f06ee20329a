package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// marks reads the "# ERROR: summary" marks of a test file as "line: summary".
func marks(t *testing.T, path string) []string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`#\s*ERROR:\s*([^#]*)`)
	var want []string
	for i, line := range strings.Split(string(src), "\n") {
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			want = append(want, fmt.Sprintf("%d: %s", i+1, strings.TrimSpace(m[1])))
		}
	}
	sort.Strings(want)
	return want
}

// reported extracts "line: summary" of the error lines of validate's output
// for file.
func reported(out, file string) []string {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(file) + `:(\d+):\d+: error: (.*)$`)
	var got []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		got = append(got, m[1]+": "+m[2])
	}
	sort.Strings(got)
	return got
}

func TestValidateInvalid(t *testing.T) {
	defer goleak.VerifyNone(t)
	const file = "testdata/invalid.hcl"
	var stdout, stderr bytes.Buffer
	if code := runValidate([]string{file}, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q", stdout.String())
	}
	out := stderr.String()
	if want, got := marks(t, file), reported(out, file); strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("errors differ from the marks\nwant:\n  %s\ngot:\n  %s\noutput:\n%s", strings.Join(want, "\n  "), strings.Join(got, "\n  "), out)
	}
	golden := "testdata/invalid.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("output differs from %s (go test -run TestValidateInvalid -update to accept):\n%s", golden, out)
	}
}

func TestValidateValid(t *testing.T) {
	defer goleak.VerifyNone(t)
	var stdout, stderr bytes.Buffer
	if code := runValidate([]string{"testdata/valid.hcl"}, &stdout, &stderr); code != 0 {
		t.Errorf("exit code %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if got, want := stdout.String(), "testdata/valid.hcl: valid (1 route(s), 1 plugin(s), 0 warning(s))\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %q", stderr.String())
	}
}

func TestValidateUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runValidate([]string{"a.hcl", "b.hcl"}, &stdout, &stderr); code != 2 || !strings.HasPrefix(stderr.String(), `tunnel validate: one file at most, got a.hcl and ["b.hcl"]`) {
		t.Errorf("two files: exit code %d, want 2; stderr %q", code, stderr.String())
	}
	stderr.Reset()
	// A directory: the hint names the mistake, not "create it".
	if code := runValidate([]string{t.TempDir()}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "is a directory: name the configuration file, not its directory.") {
		t.Errorf("directory: exit code %d, want 1; stderr %q", code, stderr.String())
	}
	stderr.Reset()
	missing := filepath.Join(t.TempDir(), "tunnel.hcl")
	if code := runValidate([]string{missing}, &stdout, &stderr); code != 1 {
		t.Errorf("missing file: exit code %d, want 1", code)
	}
	if !strings.HasPrefix(stderr.String(), "error: Cannot read configuration file\n  hint: open "+missing+": no such file or directory.") {
		t.Errorf("missing file: stderr %q", stderr.String())
	}
	// The default file is ./tunnel.hcl.
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("tunnel.hcl", []byte(`route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
}
`), 0o644)
	stdout.Reset()
	stderr.Reset()
	if code := runValidate(nil, &stdout, &stderr); code != 0 || stdout.String() != "tunnel.hcl: valid (1 route(s), 0 plugin(s), 0 warning(s))\n" {
		t.Errorf("default file: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestConfigMode runs `tunnel --config FILE` as a user does: it serves the
// routes (dump on stdout, plugin in the chain), reloads on SIGHUP after an
// edit, and exits 0 on SIGINT.
func TestConfigMode(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	stamp, err := filepath.Abs("../../internal/config/testdata/wasm/stamp.wasm")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	config := func(tag string) string {
		return fmt.Sprintf(`
plugin "stamp" {
  path = %q
}
route "echo" {
  listen = "127.0.0.1:0"
  target = %q
  dump {
    format = "text"
  }
  chain {
    plugin = plugin.stamp
    config = %q
  }
}
`, stamp, target, tag)
	}
	if err := os.WriteFile(path, []byte(config("one")), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--config", path)
	addr := p.stderr.wait(t, `msg=listening route=echo addr=(127\.0\.0\.1:\d+)`)[1]
	c := dial(t, addr)
	echoStamped(t, c, "hi", `"one"hi`)
	p.stdout.wait(t, `#1 client -> server 2 bytes\nhi\n#1 server -> client 7 bytes\n"one"hi\n`)

	// Edit, then SIGHUP; the file watcher may reload first: either way the
	// new config serves new connections, and the open one keeps its chain.
	if err := os.WriteFile(path, []byte(config("two")), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.stderr.wait(t, `msg="configuration reloaded" trigger=(SIGHUP|"file change")`)
	c2 := dial(t, addr)
	echoStamped(t, c2, "hi", `"two"hi`)
	echoStamped(t, c, "hi", `"one"hi`)
	// Both closed, or the shutdown waits out its grace period for them.
	c.Close()
	c2.Close()

	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
	}
}

func echoStamped(t *testing.T, c net.Conn, msg, want string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
}

// TestConfigModeInvalid: a file with errors starts nothing: the diagnostics
// on stderr, no listener, exit status 1.
func TestConfigModeInvalid(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runTunnel(t, "--config", "testdata/invalid.hcl")
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	golden, err := os.ReadFile("testdata/invalid.golden")
	if err != nil {
		t.Fatal(err)
	}
	// The same diagnostics as validate, without its count line.
	diags := string(golden[:bytes.LastIndex(golden[:len(golden)-1], []byte("\n"))+1])
	if want := diags + "tunnel: testdata/invalid.hcl has errors; nothing was started\n"; stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	if stdout != "" {
		t.Errorf("stdout: %q", stdout)
	}
}

// TestConfigModeDefaultFile: `tunnel` alone runs ./tunnel.hcl, and says so
// when there is none.
func TestConfigModeDefaultFile(t *testing.T) {
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	code := runConfig(context.Background(), "tunnel.hcl", &options{grace: time.Second}, &stdout, &stderr, slog.New(slog.NewTextHandler(&stderr, nil)))
	want := "error: Cannot read configuration file\n" +
		"  hint: open tunnel.hcl: no such file or directory. Create it, or name another file (tunnel --config FILE).\n" +
		"tunnel: tunnel.hcl has errors; nothing was started\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr.String(), want)
	}
}

// TestConfigModePortInUse: a listen address taken by another process is
// reported at the route's listen attribute; nothing starts.
func TestConfigModePortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	src := fmt.Sprintf("route \"r\" {\n  listen = %q\n  target = \"127.0.0.1:1\"\n}\n", ln.Addr())
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runTunnel(t, "--config", path)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	want := fmt.Sprintf("%s:2:12: error: Cannot listen\n  2 |   listen = %q\n", path, ln.Addr())
	if !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "address already in use") || !strings.HasSuffix(stderr, "has errors; nothing was started\n") {
		t.Errorf("stderr:\n%s\nwant it to start with:\n%s", stderr, want)
	}
}

// TestValidateEmptyFile: a file with no route is valid but warned about:
// the tunnel would listen on nothing.
func TestValidateEmptyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "empty.hcl")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runTunnel(t, "validate", path)
	if code != 0 || !strings.Contains(stdout, "valid (0 route(s), 0 plugin(s), 1 warning(s))") ||
		!strings.Contains(stderr, "warning: No routes") || !strings.Contains(stderr, "listens on nothing") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}
