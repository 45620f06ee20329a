package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAccessLog: --access-log FILE gets one JSON line per connection when
// it ends, with who, where, the bytes each way and why it closed.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "access.jsonl")
	target := echoServer(t)
	p, addr := startPlain(t, target, "--dump", "none", "--access-log", path)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(cliTimeout))
	c.Write([]byte("hello"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "hello" || err != nil {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()
	// The record is written when the tunnel has finished the connection;
	// stopping the tunnel waits for that.
	deadline := time.Now().Add(cliTimeout)
	var b []byte
	for len(bytes.TrimSpace(b)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		b, _ = os.ReadFile(path)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("%d access log lines, want 1:\n%s", len(lines), b)
	}
	var rec struct {
		Msg, Route, Client, Target, Reason string
		Conn                               uint64
		FromClient                         int64 `json:"bytes_from_client"`
		ToServer                           int64 `json:"bytes_to_server"`
		FromServer                         int64 `json:"bytes_from_server"`
		ToClient                           int64 `json:"bytes_to_client"`
	}
	if err := json.Unmarshal(lines[0], &rec); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if rec.Msg != "connection closed" || rec.Conn != 1 || rec.Route != "default" || rec.Target != target || rec.Client == "" ||
		rec.FromClient != 5 || rec.ToServer != 5 || rec.FromServer != 5 || rec.ToClient != 5 || rec.Reason != "client_eof" {
		t.Errorf("access log record: %s", lines[0])
	}
	if strings.Contains(p.stderr.String(), `msg="connection closed"`) {
		t.Errorf("the close record also went to stderr:\n%s", p.stderr)
	}
}

// TestAccessLogUnwritable: an access log that cannot be opened ends the
// tunnel at start with status 1 (the flag was right, the file is not), as
// a --capture file does; it used to exit 2, the status of a usage error.
func TestAccessLogUnwritable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "missing", "access.log")
	code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--access-log", path)
	if code != 1 || !strings.Contains(stderr, "tunnel: --access-log: ") {
		t.Errorf("exit %d, stderr:\n%s\nwant 1 and the --access-log error", code, stderr)
	}
}

// TestAccessLogWriteFails: lines the access log's file does not take (a
// full disk: /dev/full) are said lost on stderr, with the error; they
// were lost without a word.
func TestAccessLogWriteFails(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--access-log", "/dev/full")
	c := dial(t, addr)
	c.Close()
	p.stderr.wait(t, `msg="access log lines lost" bytes=\d+ file=/dev/full err=.*no space left on device`)
}
