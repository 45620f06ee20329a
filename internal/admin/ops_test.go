package admin_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/admin"
	"github.com/tunnelwasm/tunnel/internal/histo"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// opsSource is a source that also reports listeners, plugins and reloads,
// with values set by the test.
type opsSource struct {
	*source
	listeners []host.ListenerState
	plugins   []plugin.Metrics
	reloads   admin.ReloadStats
}

func (s *opsSource) Listeners() []host.ListenerState { return s.listeners }
func (s *opsSource) PluginMetrics() []plugin.Metrics { return s.plugins }
func (s *opsSource) Reloads() admin.ReloadStats      { return s.reloads }

// refuser refuses every connection when it opens.
type refuser struct{}

func (refuser) Open(*host.ConnInfo) (host.Filter, error) { return nil, errors.New("not welcome") }

// histogram returns the histogram of family name with exactly labels.
func histogram(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Histogram {
	t.Helper()
	f := fams[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || f.GetHelp() == "" {
		t.Fatalf("%s: %v, want a histogram with help", name, f)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels)/2 {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if label(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		return m.GetHistogram()
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

// TestMetricsHistogramsReasons: after known traffic through a real Proxy
// (a plain route on the event loop, a dumped one on goroutines, a route
// whose filter refuses, one whose target is down), the duration and
// connect-time histograms count each connection once, with buckets that
// add up, and the close and reject reasons are counted; every reason is a
// series, so a dashboard sees zeros rather than gaps.
func TestMetricsHistogramsReasons(t *testing.T) {
	target := echo(t)
	log := newCloses()
	p := &host.Proxy{Logger: slog.New(log)}
	routes := []host.Route{
		{Name: "plain", Listen: "127.0.0.1:0", Target: target},
		{Name: "dumped", Listen: "127.0.0.1:0", Target: target, Chain: []host.Link{{Name: "dump", Hook: host.Dump(io.Discard, host.DumpHex)}}},
		{Name: "refused", Listen: "127.0.0.1:0", Target: target, Chain: []host.Link{{Name: "gate", Hook: refuser{}}}},
		{Name: "down", Listen: "127.0.0.1:0", Target: testkit.Refusing(t)},
	}
	if err := p.Apply(routes); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := serve(t, &source{p: p}, admin.Options{})

	for _, route := range []string{"plain", "dumped"} {
		for range 4 {
			c, err := net.Dial("tcp", p.Addr(route).String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(timeout))
			c.Write([]byte("ping"))
			c.(*net.TCPConn).CloseWrite()
			if b, err := io.ReadAll(c); string(b) != "ping" || err != nil {
				t.Fatalf("%s: echo %q, %v", route, b, err)
			}
			c.Close()
		}
		log.wait(t, route, 4)
	}
	expectClosed(t, p.Addr("refused").String())
	log.wait(t, "refused", 1)
	expectClosed(t, p.Addr("down").String())
	log.wait(t, "down", 1)

	fams := scrape(t, base)
	c := dto.MetricType_COUNTER
	for _, route := range []string{"plain", "dumped"} {
		d := histogram(t, fams, "tunnel_connection_duration_seconds", "route", route)
		if d.GetSampleCount() != 4 || d.GetSampleSum() <= 0 || d.GetSampleSum() > 4*timeout.Seconds() {
			t.Errorf("%s: duration count %d sum %v, want 4 connections, sum within (0, %v]", route, d.GetSampleCount(), d.GetSampleSum(), 4*timeout.Seconds())
		}
		b := d.GetBucket()
		if len(b) != len(histo.ConnBounds)+1 {
			t.Fatalf("%s: %d duration buckets, want %d and +Inf", route, len(b), len(histo.ConnBounds))
		}
		if hour := b[len(b)-2]; hour.GetCumulativeCount() != 4 || hour.GetUpperBound() != 3600 {
			t.Errorf("%s: bucket %v, want le=3600 holding all 4", route, hour)
		}
		k := histogram(t, fams, "tunnel_upstream_connect_duration_seconds", "route", route)
		if k.GetSampleCount() != 4 || k.GetSampleSum() < 0 || k.GetSampleSum() > 4*timeout.Seconds() {
			t.Errorf("%s: connect count %d sum %v, want 4", route, k.GetSampleCount(), k.GetSampleSum())
		}
		if v := value(t, fams, "tunnel_connections_closed_total", c, "route", route, "reason", "client_eof"); v != 4 {
			t.Errorf("%s: closed client_eof = %v, want 4", route, v)
		}
		if v := value(t, fams, "tunnel_connections_rejected_total", c, "route", route, "reason", "denied"); v != 0 {
			t.Errorf("%s: rejected denied = %v, want 0", route, v)
		}
	}
	if v := value(t, fams, "tunnel_connections_rejected_total", c, "route", "refused", "reason", "denied"); v != 1 {
		t.Errorf("refused: rejected denied = %v, want 1", v)
	}
	for _, reason := range []string{"limit", "tls", "no_route"} {
		if v := value(t, fams, "tunnel_connections_rejected_total", c, "route", "refused", "reason", reason); v != 0 {
			t.Errorf("refused: rejected %s = %v, want 0", reason, v)
		}
	}
	if v := value(t, fams, "tunnel_connections_closed_total", c, "route", "down", "reason", "dial_failed"); v != 1 {
		t.Errorf("down: closed dial_failed = %v, want 1", v)
	}
	if k := histogram(t, fams, "tunnel_upstream_connect_duration_seconds", "route", "down"); k.GetSampleCount() != 0 {
		t.Errorf("down: %d connect times, want 0 (the dial failed)", k.GetSampleCount())
	}
	// Bounded: per route one series per reason, whatever the traffic.
	closed := len(fams["tunnel_connections_closed_total"].GetMetric())
	if closed%4 != 0 || closed/4 < 9 || closed/4 > 16 {
		t.Errorf("tunnel_connections_closed_total has %d series for 4 routes, want 9 to 16 reasons each", closed)
	}
	if n := len(fams["tunnel_connections_rejected_total"].GetMetric()); n != 16 {
		t.Errorf("tunnel_connections_rejected_total has %d series, want 4 routes × 4 reasons", n)
	}
}

// TestReadyzListenerDownAndOpsMetrics: /readyz fails while a listener is
// down and says which; tunnel_listener_up, the plugin and the reload
// metrics carry what the Source reports.
func TestReadyzListenerDownAndOpsMetrics(t *testing.T) {
	p := &host.Proxy{}
	defer p.Close()
	calls := histo.New(histo.CallBounds)
	calls.Observe(3 * time.Microsecond)
	calls.Observe(40 * time.Microsecond)
	last := time.Unix(1_700_000_000, 500_000_000)
	src := &opsSource{
		source: &source{p: p},
		listeners: []host.ListenerState{
			{Route: "a", Addr: "127.0.0.1:7000", Up: true},
			{Route: "b", Addr: "127.0.0.1:7001", Up: true, AtLimit: true},
		},
		plugins: []plugin.Metrics{{
			Plugin:    "deny",
			Calls:     map[string]map[string]uint64{"data": {"ok": 41, "timeout": 1}, "open": {"ok": 7, "rejected": 2}},
			Durations: map[string]histo.Snapshot{"data": calls.Snapshot()},
			Instances: 3,
		}},
		reloads: admin.ReloadStats{Succeeded: 2, Failed: 1, LastFailed: true, LastSuccess: last},
	}
	base := serve(t, src, admin.Options{})
	if status, _, body := get(t, "GET", base+"/readyz"); status != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz with every listener up: %d %q", status, body)
	}
	fams := scrape(t, base)
	g, c := dto.MetricType_GAUGE, dto.MetricType_COUNTER
	if value(t, fams, "tunnel_listener_up", g, "route", "a") != 1 || value(t, fams, "tunnel_listener_at_limit", g, "route", "b") != 1 ||
		value(t, fams, "tunnel_listener_at_limit", g, "route", "a") != 0 {
		t.Errorf("listener gauges wrong")
	}
	if v := value(t, fams, "tunnel_plugin_calls_total", c, "plugin", "deny", "callback", "data", "result", "ok"); v != 41 {
		t.Errorf("plugin data ok calls = %v, want 41", v)
	}
	if v := value(t, fams, "tunnel_plugin_calls_total", c, "plugin", "deny", "callback", "open", "result", "rejected"); v != 2 {
		t.Errorf("plugin open rejected calls = %v, want 2", v)
	}
	if v := value(t, fams, "tunnel_plugin_instances", g, "plugin", "deny"); v != 3 {
		t.Errorf("plugin instances = %v, want 3", v)
	}
	h := histogram(t, fams, "tunnel_plugin_call_duration_seconds", "plugin", "deny", "callback", "data")
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 43e-6 || h.GetBucket()[0].GetUpperBound() != 1e-6 || h.GetBucket()[2].GetCumulativeCount() != 1 {
		t.Errorf("plugin call durations = %v, want 2 calls summing to 43µs, 1 at or below 5µs", h)
	}
	if value(t, fams, "tunnel_config_reloads_total", c, "result", "success") != 2 || value(t, fams, "tunnel_config_reloads_total", c, "result", "failure") != 1 ||
		value(t, fams, "tunnel_config_last_reload_successful", g) != 0 || value(t, fams, "tunnel_config_last_reload_success_timestamp_seconds", g) != 1_700_000_000.5 {
		t.Errorf("reload metrics wrong")
	}

	src.listeners[1] = host.ListenerState{Route: "b", Addr: "127.0.0.1:7001", Err: errors.New("accept: too many open files")}
	status, _, body := get(t, "GET", base+"/readyz")
	if want := "not ready: route \"b\": listener on 127.0.0.1:7001 is down: accept: too many open files\n"; status != http.StatusServiceUnavailable || body != want {
		t.Errorf("/readyz with b down: %d %q, want 503 %q", status, body, want)
	}
	if v := value(t, scrape(t, base), "tunnel_listener_up", g, "route", "b"); v != 0 {
		t.Errorf("tunnel_listener_up{b} = %v, want 0", v)
	}
	// A source without listeners, plugins or reloads serves none of them.
	fams = scrape(t, serve(t, &source{p: p}, admin.Options{}))
	for _, name := range []string{"tunnel_listener_up", "tunnel_plugin_calls_total", "tunnel_config_reloads_total"} {
		if fams[name] != nil && len(fams[name].GetMetric()) > 0 {
			t.Errorf("%s served for a source that does not report it", name)
		}
	}
	if strings.Contains(body, "\n\n") {
		t.Errorf("odd /readyz body %q", body)
	}
}
