package admin_test

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/admin"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// guestSource is a source whose plugins define metrics.
type guestSource struct {
	*source
	guest func() []plugin.GuestMetric
}

func (s *guestSource) GuestMetrics() []plugin.GuestMetric { return s.guest() }

// The metrics a real plugin defines (the Go guest of host/plugin's tests,
// compiled to wasm and run in a real Proxy) are served on /metrics as
// tunnel_plugin_<plugin>_<name> with the route label, after traffic.
func TestGuestMetricsScraped(t *testing.T) {
	const dir = "../../host/plugin/internal/sharedguest"
	// Through plugintest first: it fills the compilation cache this
	// runtime reads (a minute saved under -race).
	sdktest.MustStart(t, plugintest.Wasm(t, dir), sdktest.Options{})
	reg := plugin.NewRegistry()
	rt, err := plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{CacheDir: plugintest.CacheDir(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	m, err := rt.Compile(context.Background(), "sharedguest", plugintest.Build(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	p, err := m.NewPlugin(context.Background(), plugin.Options{Name: "my-guest", Route: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	proxy := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { proxy.Close() })
	if err := proxy.Apply([]host.Route{{Name: "r1", Listen: "127.0.0.1:0", Target: echo(t),
		Chain: []host.Link{{Name: "my-guest", Hook: p}}, OnRelease: func() { p.Close() }}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", proxy.Addr("r1").String(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, cmd := range []string{"add n 1", "add n 1", "gauge 7", "observe 5", "observe 50", "observe 500"} {
		if _, err := c.Write([]byte(cmd)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadString('\n'); err != nil { // the answer: the command is done
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	base := serve(t, &guestSource{source: &source{p: proxy}, guest: reg.GuestMetrics}, admin.Options{})
	fams := scrape(t, base)
	if v := value(t, fams, "tunnel_plugin_my_guest_commands_total", dto.MetricType_COUNTER, "route", "r1", "cmd", "add"); v != 2 {
		t.Errorf("commands_total{cmd=add} = %v, want 2", v)
	}
	if v := value(t, fams, "tunnel_plugin_my_guest_level", dto.MetricType_GAUGE, "route", "r1"); v != 7 {
		t.Errorf("level = %v, want 7", v)
	}
	h := histogram(t, fams, "tunnel_plugin_my_guest_sizes", "route", "r1")
	var cum []uint64
	for _, b := range h.GetBucket() {
		cum = append(cum, b.GetCumulativeCount())
	}
	if h.GetSampleCount() != 3 || h.GetSampleSum() != 555 || len(cum) != 4 || cum[0] != 0 || cum[1] != 1 || cum[2] != 2 || cum[3] != 3 {
		t.Errorf("sizes: count %d, sum %v, buckets %v; want 3, 555, [0 1 2 3] (1, 10, 100, +Inf)", h.GetSampleCount(), h.GetSampleSum(), cum)
	}
}

// Series of one name from two plugins add up when their labels are the
// same; a series that conflicts with the first of its name (another kind
// or other label names) and one that takes the name of a tunnel metric
// are left out, and the scrape still succeeds.
func TestGuestMetricsMergeAndConflicts(t *testing.T) {
	ms := []plugin.GuestMetric{
		{Route: "r", Plugin: "p", Name: "hits_total", FullName: "tunnel_plugin_p_hits_total", Kind: plugin.MetricCounter, Value: 2, Labels: []plugin.Label{{Name: "cmd", Value: "GET"}}},
		{Route: "r", Plugin: "p", Name: "hits_total", FullName: "tunnel_plugin_p_hits_total", Kind: plugin.MetricCounter, Value: 3, Labels: []plugin.Label{{Name: "cmd", Value: "GET"}}},
		{Route: "r2", Plugin: "p", Name: "hits_total", FullName: "tunnel_plugin_p_hits_total", Kind: plugin.MetricCounter, Value: 7, Labels: []plugin.Label{{Name: "cmd", Value: "GET"}}},
		{Route: "r", Plugin: "p", Name: "hits_total", FullName: "tunnel_plugin_p_hits_total", Kind: plugin.MetricGauge, Value: 100},
		{Route: "r", Plugin: "p", Name: "hits_total", FullName: "tunnel_plugin_p_hits_total", Kind: plugin.MetricCounter, Value: 100, Labels: []plugin.Label{{Name: "verb", Value: "GET"}}},
		{Route: "r", Plugin: "call", Name: "duration_seconds", FullName: "tunnel_plugin_call_duration_seconds", Kind: plugin.MetricGauge, Value: 1},
		{Route: "r", Plugin: "p", Name: "lat", FullName: "tunnel_plugin_p_lat", Kind: plugin.MetricHistogram, Bounds: []float64{1, 2}, Buckets: []uint64{1, 2}, Count: 3, Sum: 4},
		{Route: "r", Plugin: "p", Name: "lat", FullName: "tunnel_plugin_p_lat", Kind: plugin.MetricHistogram, Bounds: []float64{1, 2}, Buckets: []uint64{0, 1}, Count: 1, Sum: 1.5},
	}
	base := serve(t, &guestSource{source: &source{p: &host.Proxy{}}, guest: func() []plugin.GuestMetric { return ms }}, admin.Options{})
	fams := scrape(t, base)
	if v := value(t, fams, "tunnel_plugin_p_hits_total", dto.MetricType_COUNTER, "route", "r", "cmd", "GET"); v != 5 {
		t.Errorf("merged series = %v, want 5", v)
	}
	if v := value(t, fams, "tunnel_plugin_p_hits_total", dto.MetricType_COUNTER, "route", "r2", "cmd", "GET"); v != 7 {
		t.Errorf("route r2 = %v, want 7", v)
	}
	if n := len(fams["tunnel_plugin_p_hits_total"].GetMetric()); n != 2 {
		t.Errorf("%d series of hits_total, want 2 (the conflicting ones left out)", n)
	}
	if f := fams["tunnel_plugin_call_duration_seconds"]; f != nil && f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("a plugin's gauge took the name of the tunnel's histogram: %v", f)
	}
	h := histogram(t, fams, "tunnel_plugin_p_lat", "route", "r")
	if h.GetSampleCount() != 4 || h.GetSampleSum() != 5.5 || h.GetBucket()[1].GetCumulativeCount() != 3 {
		t.Errorf("merged histogram %v", h)
	}
	if !strings.Contains(fams["tunnel_plugin_p_lat"].GetHelp(), "Plugin p's histogram lat") {
		t.Errorf("help %q", fams["tunnel_plugin_p_lat"].GetHelp())
	}
}
