package main

// Bad input as a careless or hostile operator gives it: each is refused
// with a line naming the flag or file and what is wrong, a non-zero exit
// status, and never a hang, a silent default or output lost without a word.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigModeRefusesPlainFlags: the config mode takes a route's chain,
// capture and limits from its file; a plain-mode flag given with it was
// ignored (a --plugin deny that denied nothing, a --capture that recorded
// nothing).
func TestConfigModeRefusesPlainFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--plugin", "builtin:noop"},
		{"--plugin", "builtin:deny", "--plugin-config", `{"patterns":["X"]}`},
		{"--capture", "x.pcapng"},
		{"--capture-max-files", "3"},
		{"--capture-max-size", "1MiB"},
		{"--dump", "text"},
		{"--dial-timeout", "1s"},
		{"--idle-timeout", "1s"},
		{"--max-conns", "1"},
		{"--proxy-protocol"},
		{"--plugin-bypass"},
		{"--plugin-trusted"},
	} {
		code, stdout, stderr := runTunnel(t, append([]string{"--config", "/nonexistent/tunnel.hcl"}, args...)...)
		want := "tunnel: " + args[0] + " belongs to the plain mode (--from/--to); in /nonexistent/tunnel.hcl, set it in a route"
		if code != 2 || !strings.HasPrefix(stderr, want) || stdout != "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", args, code, stderr, want)
		}
	}
}

// TestFlagWithoutValue: a flag given no value takes the next flag as its
// value; that was used as a file name (--access-log --log-level=warn made
// a file named "--log-level=warn" and left the level at info).
func TestFlagWithoutValue(t *testing.T) {
	t.Parallel()
	t.Cleanup(func() { os.Remove("--log-level=warn") })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--access-log", "--log-level=warn"},
			`tunnel: --access-log "--log-level=warn": that is a flag, not a value; give --access-log its value (--access-log=VALUE)`},
		{[]string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--capture", "--dump", "none"},
			`tunnel: --capture "--dump": that is a flag, not a value`},
		{[]string{"--from", "127.0.0.1:0", "--to", "--dump=none"},
			`tunnel: --to "--dump=none": that is a flag, not a value`},
		{[]string{"replay", "x.pcapng", "--out", "--format=json"},
			`tunnel replay: --out "--format=json": that is a flag, not a value`},
	} {
		code, _, stderr := runTunnel(t, tc.args...)
		if code != 2 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat("--log-level=warn"); err == nil {
		t.Error(`a file named "--log-level=warn" was created`)
	}
}

// TestFlagGivenTwice: the flag package keeps the last of --from A --from
// B; the tunnel refuses it, as it refuses a second --plugin-config.
func TestFlagGivenTwice(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--from", "127.0.0.1:0", "--from=127.0.0.1:1", "--to", "127.0.0.1:2"},
		{"--from", "127.0.0.1:0", "--to", "127.0.0.1:2", "--plugin-bypass", "--plugin-bypass"},
	} {
		code, _, stderr := runTunnel(t, args...)
		if code != 2 || !regexp.MustCompile(`^tunnel: --(from|plugin-bypass) is given more than once`).MatchString(stderr) {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// TestEmptyValue: --config "$UNSET" ran ./tunnel.hcl, --from "" --to ""
// too, and --capture "" captured nothing, without a word.
func TestEmptyValue(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--config", ""},
		{"--from", "", "--to", ""},
		{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--capture="},
		{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--access-log", ""},
	} {
		code, _, stderr := runTunnel(t, args...)
		if code != 2 || !regexp.MustCompile(`^tunnel: --(config|from|capture|access-log) is empty`).MatchString(stderr) {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// TestBadValuesNamed: values the file refuses, the flags refuse too, and
// each error says what is wrong with the value.
func TestBadValuesNamed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-conns", "1000001"}, `invalid value "1000001" for flag -max-conns: out of range: it must be from 0 to 1000000`},
		{[]string{"--max-conns", "9223372036854775808"}, `invalid value "9223372036854775808" for flag -max-conns: out of range: it must be from 0 to 1000000`},
		{[]string{"--capture-max-files", "100001"}, `invalid value "100001" for flag -capture-max-files: out of range: it must be from 0 to 100000`},
		{[]string{"--grace", "-1"}, `invalid value "-1" for flag -grace: must not be negative`},
		{[]string{"--grace", "1e30s"}, `invalid value "1e30s" for flag -grace: must be from 0s to 1h0m0s`},
		{[]string{"--dial-timeout", "9223372036854775808s"}, `invalid value "9223372036854775808s" for flag -dial-timeout: must be from 1ms to 10m0s`},
		// Two units, or one twice: not a duration, not "out of range".
		{[]string{"--grace", "10mh"}, `invalid value "10mh" for flag -grace: not a duration (e.g. 5s, 500ms, 1m30s)`},
		{[]string{"--grace", "5ss"}, `invalid value "5ss" for flag -grace: not a duration (e.g. 5s, 500ms, 1m30s)`},
		{[]string{"--max-conns", "-99999999999999999999"}, `invalid value "-99999999999999999999" for flag -max-conns: must not be negative`},
		// The flag package's own says "parse error".
		{[]string{"--plugin-bypass=maybe"}, `invalid boolean value "maybe" for -plugin-bypass: not true or false (the flag alone means true)`},
		{[]string{"validate", "-v=2x"}, `invalid boolean value "2x" for -v: not true or false (the flag alone means true)`},
		{[]string{"--plugin", "builtin:deny", "--plugin-config", `{"patterns":["A"],"patterns":["B"]}`}, `for flag -plugin-config: setting "patterns" is given twice; the plugin would see only the last one`},
	} {
		code, _, stderr := runTunnel(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	for _, args := range [][]string{
		{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--log-level", "info+2"},
		{"replay", "x.pcapng", "--log-level", "warn-4"},
	} {
		code, _, stderr := runTunnel(t, args...)
		if code != 2 || !strings.Contains(stderr, `want debug, info, warn or error`) {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
	code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--pprof", ":0")
	if want := `tunnel: --pprof: address ":0" has no host`; code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("--pprof :0: exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	// A bad flag after the file was reported, then the replay ran anyway
	// and exited 0.
	code, stdout, stderr := runTunnel(t, "replay", "/nonexistent.pcapng", "--bogus")
	if code != 2 || !strings.HasPrefix(stderr, "flag provided but not defined: -bogus") || stdout != "" {
		t.Errorf("replay FILE --bogus: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ = runTunnel(t, "plugins", "--help")
	if code != 0 || !strings.Contains(stdout, "Built-in plugins") {
		t.Errorf("plugins --help: exit %d, stdout %q", code, stdout)
	}
}

// TestDiagnosticsOfABinaryFile: validate of a binary file printed every
// line of it raw, terminal escapes included, once per error (hundreds).
func TestDiagnosticsOfABinaryFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bin.hcl")
	var src []byte
	x := uint32(1)
	for range 8192 {
		x = x*1103515245 + 12345
		c := byte(x >> 16)
		if strings.IndexByte("[{(", c) >= 0 {
			c = 0x1b // no nesting: the parser goes on, error after error
		}
		src = append(src, c, 0x07, 0)
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runTunnel(t, "validate", path)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if strings.ContainsAny(stderr, "\x1b\x00\a") {
		t.Error("stderr holds control characters of the file")
	}
	if n := strings.Count(stderr, ": error: "); n > 50 || !strings.Contains(stderr, "more diagnostic(s) not shown") {
		t.Errorf("%d errors printed, want at most 50 and a line saying how many more", n)
	}
	for _, l := range strings.Split(stderr, "\n") {
		if len(l) > 400 {
			t.Errorf("a line of %d bytes: %.80q...", len(l), l)
			break
		}
	}
}

// TestAccessLogIsTheConfig: --access-log naming the configuration file
// appended JSON lines to it: the next reload failed, and the next start.
func TestAccessLogIsTheConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	src := "route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:1\"\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runTunnel(t, "--config", path, "--access-log", filepath.Join(filepath.Dir(path), ".", "tunnel.hcl"))
	if want := "is the configuration file " + path; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, want)
	}
	if b, _ := os.ReadFile(path); string(b) != src {
		t.Errorf("the configuration changed:\n%s", b)
	}
}
