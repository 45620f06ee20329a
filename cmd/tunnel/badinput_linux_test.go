package main

// Bad input that only Linux has: named pipes, /dev/zero and /dev/full.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestNotARegularFile: a named pipe nobody writes to hung validate, the
// config mode, --plugin, --tls-cert, --access-log and replay for ever, and
// --plugin /dev/zero read until the memory ran out: each is an error now,
// at once.
func TestNotARegularFile(t *testing.T) {
	t.Parallel()
	fifo := testkit.Fifo(t, "fifo")
	plain := []string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--dump", "none"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", fifo}, fifo + " is a named pipe (FIFO), not a regular file"},
		{[]string{"--config", fifo}, fifo + " is a named pipe (FIFO), not a regular file"},
		{append(plain, "--plugin", fifo), "tunnel: --plugin " + fifo + ": plugin: " + fifo + " is a named pipe (FIFO), not a regular file"},
		{append(plain, "--plugin", "/dev/zero"), "tunnel: --plugin /dev/zero: plugin: /dev/zero is a character device, not a regular file"},
		{append(plain, "--tls-cert", fifo, "--tls-key", fifo), "tunnel: tls: cert: " + fifo + " is a named pipe (FIFO), not a regular file"},
		{append(plain, "--access-log", fifo), "tunnel: --access-log: " + fifo + " is a named pipe (FIFO) that nobody reads"},
		{[]string{"replay", fifo}, "tunnel replay: " + fifo + " is a named pipe (FIFO), not a regular file"},
	} {
		code, _, stderr := runTunnel(t, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestCaptureNotAFile: --capture and --out naming a directory, a device
// or (--out) an existing file wrote NAME-1 beside it without a word.
func TestCaptureNotAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.pcapng")
	if err := os.WriteFile(existing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--capture", dir}, "tunnel: --capture: capture: " + dir + " is a directory: name a file in it"},
		{[]string{"--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--capture", "/dev/full"}, "tunnel: --capture: capture: /dev/full exists and is not a regular file"},
	} {
		code, _, stderr := runTunnel(t, tc.args...)
		if code != 1 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(dir + "-1"); err == nil {
		t.Errorf("%s-1 was written", dir)
	}
	// replay --out: a capture to replay is needed first.
	capture := filepath.Join(dir, "in.pcapng")
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--capture", capture)
	converse(t, dial(t, addr), "hello")
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("capturing: exit %d: %s", code, p.stderr)
	}
	code, _, stderr := runTunnel(t, "replay", capture, "--out", existing)
	if want := "tunnel replay: --out " + existing + " exists; the replay does not overwrite a file"; code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("replay --out EXISTING: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// TestStdoutWriteFails: a dump that stdout refuses (ENOSPC on /dev/full)
// was dropped without a word; the broken pipe alone was said.
func TestStdoutWriteFails(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer full.Close()
	p := &proc{cmd: exec.Command(tunnelBin, "--from", "127.0.0.1:0", "--to", echoServer(t), "--dump", "hex"), stdout: newOutput(), stderr: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = full, p.stderr
	p.start(t)
	m := p.stderr.wait(t, `msg=listening .*addr=(127\.0\.0\.1:\d+)`)
	converse(t, dial(t, m[1]), "hello")
	p.stderr.wait(t, `level=ERROR msg="stdout: writing the traffic dump or plugin output failed.*no space left on device`)
}

// TestSIGHUPWhileLoadingPlugins: the plain mode ignores SIGHUP (it has no
// configuration to reload), but one that came while its plugins compiled
// (seconds for a large module) killed it, silently, with status 129.
func TestSIGHUPWhileLoadingPlugins(t *testing.T) {
	t.Parallel()
	p := start(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--dump", "none", "--cache-dir", "",
		"--pprof", "127.0.0.1:0", "--plugin", "builtin:redact", "--plugin-config", `{"cards":true}`)
	p.stderr.wait(t, `msg="pprof listening"`) // the signals are subscribed to; the plugin compiles
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.stderr.wait(t, `msg=listening route=default`)
	if p.exitedWithin(0) {
		t.Fatalf("ended by SIGHUP: %v; stderr:\n%s", p.err, p.stderr)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr)
	}
}

// TestConfigReplacedByFIFO: the file watcher read the configuration with
// os.ReadFile: a named pipe moved in its place blocked it in open(2), and
// with it the stop: SIGTERM, then a second SIGTERM, did nothing; SIGKILL
// alone ended the process.
func TestConfigReplacedByFIFO(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	if err := os.WriteFile(path, []byte("route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:1\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--config", path, "--grace", "1s")
	p.stderr.wait(t, `msg=listening route=r`)
	fifo := testkit.Fifo(t, "fifo")
	if err := os.Rename(fifo, path); err != nil {
		t.Fatal(err)
	}
	p.stderr.wait(t, `msg="reload failed; keeping the running configuration" trigger="file change"`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr)
	}
	if want := "is a named pipe (FIFO), not a regular file"; !strings.Contains(p.stderr.String(), want) {
		t.Errorf("stderr does not say %q:\n%s", want, p.stderr)
	}
}
