package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// accessRecord is one line of the access log.
type accessRecord struct {
	Msg, Level, Route, Client, Target, Reason, Err, Duration string
	Conn                                                     uint64
	FromClient                                               int64 `json:"bytes_from_client"`
	ToServer                                                 int64 `json:"bytes_to_server"`
	FromServer                                               int64 `json:"bytes_from_server"`
	ToClient                                                 int64 `json:"bytes_to_client"`
}

// TestAccessLogReasons: in the config mode, --access-log gets a JSON
// record for every way a connection ends, each with the route, the client,
// the target, the bytes each way, the duration and the reason, and the
// error when it failed: client_eof, server_eof, reset, dial_failed,
// idle_timeout, filter_close (the deny plugin), shutdown (open at the end
// of the grace period).
func TestAccessLogReasons(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.jsonl")
	echo := echoServer(t)
	banner := server(t, func(c net.Conn) {
		c.Write([]byte("hello\n"))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
	})
	down := testkit.Refusing(t)
	path := filepath.Join(dir, "tunnel.hcl")
	os.WriteFile(path, []byte(`
plugin "deny" {
  builtin = "deny"
}
route "echo" {
  listen = "127.0.0.1:0"
  target = "`+echo+`"
  dump { enabled = false }
}
route "banner" {
  listen = "127.0.0.2:0"
  target = "`+banner+`"
  dump { enabled = false }
}
route "down" {
  listen = "127.0.0.3:0"
  target = "`+down+`"
  dump { enabled = false }
}
route "idle" {
  listen       = "127.0.0.4:0"
  target       = "`+echo+`"
  idle_timeout = "200ms"
  dump { enabled = false }
}
route "deny" {
  listen = "127.0.0.5:0"
  target = "`+echo+`"
  dump { enabled = false }
  chain {
    plugin = plugin.deny
    config = { pattern = "QUIT", action = "close", reply = "bye\n", from = "client" }
  }
}
`), 0o644)
	p := start(t, "--config", path, "--access-log", logPath, "--grace", "300ms")
	addrs := map[string]string{}
	for _, r := range []string{"echo", "banner", "down", "idle", "deny"} {
		addrs[r] = p.stderr.wait(t, `msg=listening route=`+r+` addr=(127\.0\.0\.\d:\d+)`)[1]
	}
	records := func() []accessRecord {
		b, _ := os.ReadFile(logPath)
		var out []accessRecord
		for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
			var r accessRecord
			if len(l) > 0 && json.Unmarshal(l, &r) == nil {
				out = append(out, r)
			}
		}
		return out
	}
	waitRecords := func(n int) {
		t.Helper()
		for start := time.Now(); len(records()) < n; time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > cliTimeout {
				t.Fatalf("%d access log records after %v, want %d", len(records()), cliTimeout, n)
			}
		}
	}

	// client_eof: 5 bytes each way, the client half-closes first.
	c := dial(t, addrs["echo"])
	c.SetDeadline(time.Now().Add(cliTimeout))
	c.Write([]byte("hello"))
	c.CloseWrite()
	io.ReadAll(c)
	c.Close()
	waitRecords(1)
	// server_eof: the server sends 6 bytes and closes.
	c = dial(t, addrs["banner"])
	c.SetDeadline(time.Now().Add(cliTimeout))
	io.ReadAll(c)
	c.Close()
	waitRecords(2)
	// reset: the client aborts.
	c = dial(t, addrs["echo"])
	exchange(t, c, "abc")
	c.SetLinger(0)
	c.Close()
	waitRecords(3)
	// dial_failed: the tunnel resets the client, maybe before its connect
	// returns.
	if dc, err := net.DialTimeout("tcp", addrs["down"], cliTimeout); err == nil {
		dc.SetDeadline(time.Now().Add(cliTimeout))
		io.ReadAll(dc)
		dc.Close()
	} else if !isReset(err) {
		t.Fatalf("dial the route to nowhere: %v", err)
	}
	waitRecords(4)
	// idle_timeout.
	c = dial(t, addrs["idle"])
	c.SetDeadline(time.Now().Add(cliTimeout))
	io.ReadAll(c)
	c.Close()
	waitRecords(5)
	// filter_close: the deny plugin answers and closes.
	c = dial(t, addrs["deny"])
	c.SetDeadline(time.Now().Add(cliTimeout))
	c.Write([]byte("QUIT\n"))
	if b, _ := io.ReadAll(c); string(b) != "bye\n" {
		t.Errorf("deny replied %q", b)
	}
	c.Close()
	waitRecords(6)
	// shutdown: open when the grace period ends.
	c = dial(t, addrs["echo"])
	exchange(t, c, "still here")
	defer c.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}

	type want struct {
		route                                      string
		fromClient, toServer, fromServer, toClient int64
		failed                                     bool
		target                                     string
	}
	wants := map[string]want{
		"client_eof":   {"echo", 5, 5, 5, 5, false, echo},
		"server_eof":   {"banner", 0, 0, 6, 6, false, banner},
		"reset":        {"echo", 3, 3, 3, 3, true, echo},
		"dial_failed":  {"down", 0, 0, 0, 0, true, down},
		"idle_timeout": {"idle", 0, 0, 0, 0, true, echo},
		"filter_close": {"deny", 5, 0, 0, 4, false, echo},
		"shutdown":     {"echo", 10, 10, 10, 10, true, echo},
	}
	got := records()
	if len(got) != len(wants) {
		t.Fatalf("%d records, want %d:\n%+v", len(got), len(wants), got)
	}
	seen := map[uint64]bool{}
	for _, r := range got {
		w, ok := wants[r.Reason]
		if !ok {
			t.Errorf("unexpected reason %q: %+v", r.Reason, r)
			continue
		}
		delete(wants, r.Reason)
		if r.Msg != "connection closed" || r.Route != w.route || r.Target != w.target || !strings.HasPrefix(r.Client, "127.0.0.1:") || r.Conn == 0 || seen[r.Conn] {
			t.Errorf("%s: %+v", r.Reason, r)
		}
		seen[r.Conn] = true
		if r.FromClient != w.fromClient || r.ToServer != w.toServer || r.FromServer != w.fromServer || r.ToClient != w.toClient {
			t.Errorf("%s: bytes %d/%d/%d/%d, want %d/%d/%d/%d", r.Reason, r.FromClient, r.ToServer, r.FromServer, r.ToClient, w.fromClient, w.toServer, w.fromServer, w.toClient)
		}
		if d, err := time.ParseDuration(r.Duration); err != nil || d <= 0 || d > cliTimeout {
			t.Errorf("%s: duration %q", r.Reason, r.Duration)
		}
		if w.failed != (r.Err != "") || w.failed != (r.Level == "WARN") {
			t.Errorf("%s: level %s, err %q; want an error: %v", r.Reason, r.Level, r.Err, w.failed)
		}
	}
	for reason := range wants {
		t.Errorf("no record with reason %s", reason)
	}
}

// exchange sends msg and reads its echo, leaving the connection open.
func exchange(t *testing.T, c *net.TCPConn, msg string) {
	t.Helper()
	io.WriteString(c, msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
}
