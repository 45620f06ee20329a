package plugin_test

import (
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// pluginMetrics returns the runtime's figures for the plugin named name.
func pluginMetrics(t *testing.T, rt *plugin.Runtime, name string) plugin.Metrics {
	t.Helper()
	for _, m := range rt.Metrics() {
		if m.Plugin == name {
			return m
		}
	}
	t.Fatalf("no metrics for plugin %q in %+v", name, rt.Metrics())
	return plugin.Metrics{}
}

// TestMetricsCallsByResult: calls are counted by callback and result, each
// with its duration; a trap in tunnel_on_open is an "error"; the instances
// live are those of the pool. The counters outlive the Plugin (a reload
// makes a new one of the same name) and keep counting for the next one.
func TestMetricsCallsByResult(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	noop := wasmPlugin(t, rt, "noop", plugin.Options{Instances: 2})
	srv := tn.Serve(t, tn.Echo)
	addr, _, plogs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "noop", Hook: noop})
	for range 3 {
		got := tn.Exchange(tn.Dial(t, addr), []byte("hello"))
		if got.Err != nil || got.N != 5 {
			t.Fatalf("echo through noop: %d bytes, err %v", got.N, got.Err)
		}
	}
	plogs.WaitCount(t, 3, "connection closed")
	m := pluginMetrics(t, rt, "noop")
	// Each connection: on_data with the bytes, on_data with end=1 in each
	// direction (the client's 5 bytes come back, then both ends), on_close.
	if data := m.Calls["data"]["ok"]; data < 3*3 {
		t.Errorf("data calls ok = %d, want at least 9 (3 connections × bytes and two ends)", data)
	}
	for cb, results := range m.Calls {
		for res, n := range results {
			if res != "ok" && n != 0 {
				t.Errorf("%s calls %s = %d, want 0", cb, res, n)
			}
		}
		if d := m.Durations[cb]; d.Count > results["ok"] || (d.Count > 0 && d.Sum <= 0) {
			t.Errorf("%s: %d durations summing to %v for %d calls", cb, d.Count, d.Sum, results["ok"])
		}
	}
	if len(m.Calls) != 4 || len(m.Calls["open"]) != 5 {
		t.Errorf("calls = %v, want the 4 callbacks × 5 results", m.Calls)
	}
	if m.Instances < 1 || m.Instances > 2 {
		t.Errorf("instances = %d, want 1 or 2 (pool of 2)", m.Instances)
	}

	trap := wasmPlugin(t, rt, "trap_open", plugin.Options{})
	addr2, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "trap_open", Hook: trap})
	exchangeOrRefused(t, addr2, []byte("x"))
	logs.Wait(t, "plugin failed", "plugin=trap_open")
	if got := pluginMetrics(t, rt, "trap_open").Calls["open"]; got["error"] != 1 || got["ok"] != 0 {
		t.Errorf("trap_open open calls = %v, want error 1", got)
	}

	before := pluginMetrics(t, rt, "noop").Calls["data"]["ok"]
	noop.Close()
	if m := pluginMetrics(t, rt, "noop"); m.Instances != 0 || m.Calls["data"]["ok"] != before {
		t.Errorf("after Close: %d instances, %d data calls; want 0 and %d (kept)", m.Instances, m.Calls["data"]["ok"], before)
	}
	again := wasmPlugin(t, rt, "noop", plugin.Options{})
	addr3, _, logs3 := tn.Tunnel(t, srv.Addr(), host.Link{Name: "noop", Hook: again})
	tn.Exchange(tn.Dial(t, addr3), []byte("hello"))
	logs3.Wait(t, "connection closed", "bytes_to_client=5")
	if m := pluginMetrics(t, rt, "noop"); m.Calls["data"]["ok"] <= before {
		t.Errorf("a new plugin of the same name: %d data calls, want more than %d", m.Calls["data"]["ok"], before)
	}
}
