package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics GETs /metrics and parses it with Prometheus's text parser.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := curl(t, base+"/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// waitMetrics scrapes until ok holds (what it waits for is counted just
// after the log line the test saw), bounded by cliTimeout.
func waitMetrics(t *testing.T, base string, ok func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(cliTimeout)
	for {
		fams := scrapeMetrics(t, base)
		if ok(fams) || time.Now().After(deadline) {
			return fams
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// series returns the value of the counter or gauge of family name whose
// labels include labels (name, value pairs); -1 when there is none.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		if m.GetHistogram() != nil {
			return float64(m.GetHistogram().GetSampleCount())
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

// TestAdminOpsMetrics: in the config mode, /metrics counts the plugins'
// calls by callback and result with their durations and live instances,
// the connections' durations and connect times, and the reloads by result
// with the time of the last good load; a reload that cannot bind a route's
// address turns /readyz to 503 until a good one. The file watcher makes
// the reloads, one per edit (each edit replaces the file whole): a SIGHUP
// after an edit reloads again whenever the watcher's check comes first,
// and the counts would then depend on the machine's speed. (TestConfigMode
// reloads on SIGHUP.)
func TestAdminOpsMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	target := echoServer(t)
	good := `
admin {
  listen = "127.0.0.1:0"
}
plugin "noop" {
  builtin   = "noop"
  instances = 2
}
route "web" {
  listen = "127.0.0.1:0"
  target = "` + target + `"
  dump { enabled = false }
  chain { plugin = plugin.noop }
}
`
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--config", path)
	base := adminURL(t, p)
	addr := p.stderr.wait(t, `msg=listening route=web addr=(127\.0\.0\.1:\d+)`)[1]
	before := time.Now()
	for range 3 {
		c := dial(t, addr)
		converse(t, c, "hello")
		c.Close()
	}
	p.stderr.waitUntil(t, cliTimeout, "logged 3 closes", func(s string) bool { return strings.Count(s, `msg="connection closed"`) == 3 })
	fams := scrapeMetrics(t, base)
	if v := series(fams, "tunnel_plugin_calls_total", "plugin", "noop", "callback", "data", "result", "ok"); v < 3 {
		t.Errorf("noop data calls ok = %v, want at least 3", v)
	}
	if v := series(fams, "tunnel_plugin_calls_total", "plugin", "noop", "callback", "open", "result", "error"); v != 0 {
		t.Errorf("noop open calls error = %v, want 0", v)
	}
	if v := series(fams, "tunnel_plugin_instances", "plugin", "noop"); v < 1 || v > 2 {
		t.Errorf("noop instances = %v, want 1 or 2", v)
	}
	if v := series(fams, "tunnel_plugin_call_duration_seconds", "plugin", "noop", "callback", "data"); v < 0 {
		t.Errorf("no call duration histogram for noop's data calls")
	}
	if v := series(fams, "tunnel_connection_duration_seconds", "route", "web"); v != 3 {
		t.Errorf("connection durations counted = %v, want 3", v)
	}
	if v := series(fams, "tunnel_upstream_connect_duration_seconds", "route", "web"); v != 3 {
		t.Errorf("connect times counted = %v, want 3", v)
	}
	if v := series(fams, "tunnel_listener_up", "route", "web"); v != 1 {
		t.Errorf("tunnel_listener_up = %v, want 1", v)
	}
	if v := series(fams, "tunnel_config_reloads_total", "result", "success"); v != 0 {
		t.Errorf("reloads success = %v before any reload", v)
	}
	started := series(fams, "tunnel_config_last_reload_success_timestamp_seconds")
	if started < float64(before.Add(-time.Minute).Unix()) || started > float64(time.Now().Unix()+1) || series(fams, "tunnel_config_last_reload_successful") != 1 {
		t.Errorf("last good load at %v (successful %v), want the start", started, series(fams, "tunnel_config_last_reload_successful"))
	}

	// A file with an error: the running configuration stays, counted.
	replaceFile(t, path, good+"\nroute {\n")
	p.stderr.wait(t, `msg="reload failed; keeping the running configuration"`)
	// Counted just after that line is logged.
	fams = waitMetrics(t, base, func(f map[string]*dto.MetricFamily) bool {
		return series(f, "tunnel_config_reloads_total", "result", "failure") == 1
	})
	if series(fams, "tunnel_config_reloads_total", "result", "failure") != 1 || series(fams, "tunnel_config_last_reload_successful") != 0 ||
		series(fams, "tunnel_config_last_reload_success_timestamp_seconds") != started {
		t.Errorf("after a bad reload: failures %v, successful %v, last good %v (want 1, 0, %v)", series(fams, "tunnel_config_reloads_total", "result", "failure"),
			series(fams, "tunnel_config_last_reload_successful"), series(fams, "tunnel_config_last_reload_success_timestamp_seconds"), started)
	}
	if status, _ := curl(t, base+"/readyz"); status != 200 {
		t.Errorf("/readyz after a reload with a syntax error: %d, want 200 (the running configuration serves)", status)
	}

	// A second route on an address in use: the reload fails, the running
	// configuration serves on, so the replica stays ready (a bad edit of a
	// shared ConfigMap must not take every replica out of its Service);
	// the failure is in the log and the metrics.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	replaceFile(t, path, good+`
route "taken" {
  listen = "`+busy.Addr().String()+`"
  target = "`+target+`"
}
`)
	fams = waitMetrics(t, base, func(f map[string]*dto.MetricFamily) bool {
		return series(f, "tunnel_config_reloads_total", "result", "failure") == 2
	})
	if status, body := curl(t, base+"/readyz"); status != 200 || series(fams, "tunnel_config_last_reload_successful") != 0 {
		t.Errorf("after a reload that could not bind: /readyz %d %q, last_reload_successful %v; want 200 (the running configuration serves) and 0",
			status, body, series(fams, "tunnel_config_last_reload_successful"))
	}
	p.stderr.wait(t, `summary="Cannot listen" hint="route \\"taken\\": cannot listen on `+regexp.QuoteMeta(busy.Addr().String()))
	replaceFile(t, path, good)
	p.stderr.wait(t, `msg="configuration reloaded" trigger="file change"`)
	fams = waitMetrics(t, base, func(f map[string]*dto.MetricFamily) bool {
		return series(f, "tunnel_config_reloads_total", "result", "success") == 1
	})
	if status, body := curl(t, base+"/readyz"); status != 200 {
		t.Errorf("/readyz after a good reload: %d %q", status, body)
	}
	if series(fams, "tunnel_config_reloads_total", "result", "success") != 1 || series(fams, "tunnel_config_reloads_total", "result", "failure") != 2 ||
		series(fams, "tunnel_config_last_reload_successful") != 1 || series(fams, "tunnel_config_last_reload_success_timestamp_seconds") < started {
		t.Errorf("after a good reload: success %v failure %v successful %v", series(fams, "tunnel_config_reloads_total", "result", "success"),
			series(fams, "tunnel_config_reloads_total", "result", "failure"), series(fams, "tunnel_config_last_reload_successful"))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
}

// TestPluginByURLValidate: `tunnel validate` fetches a plugin by URL from
// a local HTTPS server (trusted through SSL_CERT_FILE, as an operator's
// private CA would be), checks its sha256, compiles it and keeps it in the
// cache directory, so a second validate fetches nothing; a wrong sha256
// fails with both hashes.
func TestPluginByURLValidate(t *testing.T) {
	wasm, err := os.ReadFile("../../host/plugin/testdata/noop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(wasm)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	sum := sha256.Sum256(wasm)
	conf := func(h string) string {
		path := filepath.Join(dir, "tunnel.hcl")
		os.WriteFile(path, []byte(`
plugin "remote" {
  path   = "`+srv.URL+`/noop.wasm"
  sha256 = "`+h+`"
}
route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain { plugin = plugin.remote }
}
`), 0o644)
		return path
	}
	validate := func(path string) (int, string) {
		cmd := exec.Command(tunnelBin, "validate", path)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+ca, "TUNNEL_CACHE_DIR="+filepath.Join(dir, "cache"))
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	path := conf(hex.EncodeToString(sum[:]))
	for i := range 2 {
		if code, out := validate(path); code != 0 || !strings.Contains(out, "valid (1 route(s), 1 plugin(s)") {
			t.Fatalf("validate #%d: exit %d:\n%s", i+1, code, out)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d fetches for two validates, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "fetched", hex.EncodeToString(sum[:])+".wasm")); err != nil {
		t.Errorf("the fetched plugin is not in the cache directory: %v", err)
	}
	wrong := strings.Repeat("0", 64)
	code, out := validate(conf(wrong))
	if code != 1 || !strings.Contains(out, "Plugin hash mismatch") || !strings.Contains(out, hex.EncodeToString(sum[:])) || !strings.Contains(out, wrong) {
		t.Errorf("wrong sha256: exit %d:\n%s", code, out)
	}
}

// replaceFile replaces the file at path with one holding src, by a rename:
// a file watcher never reads it half written.
func replaceFile(t *testing.T, path, src string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
