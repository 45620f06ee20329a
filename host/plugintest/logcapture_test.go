package plugintest

import (
	"log/slog"
	"testing"
)

// TestLogsKeepTheHostsCause: a host record about the plugin keeps its
// callback and cause, which Logs used to drop ("plugin failed" and no
// why); the plugin's own lines stay as they were logged.
func TestLogsKeepTheHostsCause(t *testing.T) {
	var l logCapture
	log := slog.New(&l)
	log.Error("plugin failed", "plugin", "x", "callback", "tunnel_on_data", "cause", "tunnel_on_data returned 7, which is not an action", "policy", "close")
	log.Warn("blocked FLUSHALL", "plugin", "x", "conn", 1)
	got := l.get()
	want := []string{"plugin failed callback=tunnel_on_data cause=tunnel_on_data returned 7, which is not an action", "blocked FLUSHALL"}
	if len(got) != len(want) {
		t.Fatalf("logs %q, want %q", got, want)
	}
	for i := range want {
		if got[i].Msg != want[i] {
			t.Errorf("log %d = %q, want %q", i, got[i].Msg, want[i])
		}
	}
}
