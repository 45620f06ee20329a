package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// curl GETs url and returns the status and the body.
func curl(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: cliTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// adminURL waits for the admin endpoint's address in p's log.
func adminURL(t *testing.T, p *proc) string {
	t.Helper()
	return "http://" + p.stderr.wait(t, `msg="admin endpoint listening" addr=(127\.0\.0\.1:\d+)`)[1]
}

// waitReady polls /readyz until it answers 200 "ready", as a probe does;
// before, it may only answer 503 with the reason before (the listeners are
// bound a moment before the tunnel calls itself ready).
func waitReady(t *testing.T, p *proc, base, before string) {
	t.Helper()
	deadline := time.Now().Add(cliTimeout)
	for {
		status, body := curl(t, base+"/readyz")
		if status == 200 && body == "ready\n" {
			return
		}
		if status != 503 || body != "not ready: "+before+"\n" || time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %q; stderr:\n%s", status, body, p.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAdminPlain: --admin in the plain mode serves the metrics of the
// traffic, readiness and the route; SIGTERM with --drain-delay turns
// /readyz to 503 at once while the route still accepts, and the listeners
// stop only after the delay.
func TestAdminPlain(t *testing.T) {
	t.Parallel()
	const delay = 500 * time.Millisecond
	p, tunnelAddr := startPlain(t, echoServer(t), "--dump", "none", "--admin", "127.0.0.1:0", "--drain-delay", delay.String())
	base := adminURL(t, p)
	if status, body := curl(t, base+"/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	waitReady(t, p, base, "not listening yet")
	c := dial(t, tunnelAddr)
	converse(t, c, "hello")
	c.Close()
	p.stderr.wait(t, `msg="connection closed"`)
	_, metrics := curl(t, base+"/metrics")
	for _, line := range []string{
		`tunnel_connections_total{route="default"} 1`,
		`tunnel_connections_active{route="default"} 0`,
		`tunnel_bytes_received_total{peer="client",route="default"} 5`,
		`tunnel_bytes_sent_total{peer="client",route="default"} 5`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics has no line %q:\n%s", line, metrics)
		}
	}
	var cfg struct {
		Routes []struct{ Name, Listen, Address, Target string }
	}
	if status, body := curl(t, base+"/config"); status != 200 || json.Unmarshal([]byte(body), &cfg) != nil ||
		len(cfg.Routes) != 1 || cfg.Routes[0].Name != "default" || cfg.Routes[0].Address != tunnelAddr {
		t.Errorf("/config: %d %s", status, body)
	}
	if status, _ := curl(t, base+"/debug/pprof/"); status != 404 {
		t.Errorf("/debug/pprof/ without pprof: %d, want 404", status)
	}

	signalled := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.stderr.wait(t, `msg="draining: not ready, still accepting"`)
	if status, body := curl(t, base+"/readyz"); status != 503 || body != "not ready: draining: POST /drain or a shutdown asked new connections to go elsewhere\n" {
		t.Errorf("/readyz while draining: %d %q", status, body)
	}
	c = dial(t, tunnelAddr) // still accepting
	converse(t, c, "during the drain")
	c.Close()
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
	if took := time.Since(signalled); took < delay {
		t.Errorf("exited %v after SIGTERM, before the drain delay of %v", took, delay)
	}
	logs := p.stderr.String()
	if strings.Index(logs, "draining") > strings.Index(logs, "shutting down") {
		t.Errorf("the listeners stopped before the drain:\n%s", logs)
	}
}

// TestAdminConfig: the admin block of tunnel.hcl serves /config with the
// file's routes, and pprof when enabled.
func TestAdminConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	src := `
admin {
  listen = "127.0.0.1:0"
  pprof  = true
}
route "web" {
  listen = "127.0.0.1:0"
  target = "` + echoServer(t) + `"
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--config", path)
	base := adminURL(t, p)
	// Ready once the Runner has applied the file, as a probe sees it.
	waitReady(t, p, base, "no configuration is running yet")
	var cfg struct {
		File   string
		Routes []struct {
			Name  string
			Chain []string
		}
	}
	if status, body := curl(t, base+"/config"); status != 200 || json.Unmarshal([]byte(body), &cfg) != nil ||
		cfg.File != path || len(cfg.Routes) != 1 || cfg.Routes[0].Name != "web" {
		t.Errorf("/config: %d %s", status, body)
	}
	if status, body := curl(t, base+"/debug/pprof/"); status != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d", status)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
}

// TestAdminAddress: --admin with no host is refused with the fix to make;
// a non-loopback address written out is served, with a loud warning.
func TestAdminAddress(t *testing.T) {
	code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--admin", ":9901")
	if code != 2 || !strings.Contains(stderr, `tunnel: --admin: address ":9901" has no host, which listens on every interface; write 127.0.0.1:9901 for this machine only, or 0.0.0.0:9901 to expose it on purpose`) {
		t.Errorf("--admin :9901: exit %d, stderr:\n%s", code, stderr)
	}
	p, _ := startPlain(t, echoServer(t), "--admin", "0.0.0.0:0")
	p.stderr.wait(t, `level=WARN msg="THE ADMIN ENDPOINT IS REACHABLE FROM OTHER MACHINES`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
}
