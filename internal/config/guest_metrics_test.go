package config

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugin"
)

// respConfig runs the built-in resp plugin on route r, blocking commands.
func respConfig(target, commands string) string {
	return `
plugin "resp" {
  builtin = "resp"
}
route "r" {
  listen = "127.0.0.1:0"
  target = "` + target + `"
  chain {
    plugin = plugin.resp
    config = { block = [` + commands + `] }
  }
}
`
}

// blocked returns the sum of resp's blocked_total{command} series on
// route r and how many there are (one per live store of the plugin).
func blocked(r *Runner, command string) (sum int64, n int) {
	for _, m := range r.GuestMetrics() {
		if m.Route == "r" && m.FullName == "tunnel_plugin_resp_blocked_total" && len(m.Labels) == 1 &&
			m.Labels[0] == (plugin.Label{Name: "command", Value: command}) {
			sum, n = sum+m.Value, n+1
		}
	}
	return sum, n
}

// waitBlocked waits until there is one blocked_total{command} series and
// its value is want (a reload releases the old version's plugins once its
// connections are gone, and with them a store no new plugin shares).
func waitBlocked(t *testing.T, h *harness, command string, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, n := blocked(h.r, command)
		if n == 1 && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocked_total{command=%q}: %d series adding up to %d, want one at %d; all: %+v", command, n, got, want, h.r.GuestMetrics())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flushall sends FLUSHALL through the route and waits for resp's error.
func flushall(t *testing.T, h *harness) {
	t.Helper()
	c := dial(t, h.addr())
	defer c.Close()
	if _, err := c.Write([]byte("*1\r\n$8\r\nFLUSHALL\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "-") {
		t.Fatalf("answer %q, %v; want an error reply", line, err)
	}
}

// The Runner reports the metrics its plugins define, with the route's
// name; an unchanged reload keeps them (the plugin's Registry entry is
// found again), a changed config starts them again.
func TestRunnerGuestMetricsAcrossReloads(t *testing.T) {
	t.Parallel()
	precompileBuiltins(t, "resp")
	target := echoServer(t)
	h := start(t, respConfig(target, `"FLUSHALL"`))
	flushall(t, h)
	waitBlocked(t, h, "flushall", 1)

	h.hup <- os.Interrupt // an unchanged reload: the new version counts on
	if r := h.waitReload(); r.Err != nil {
		t.Fatal(r.Err)
	}
	flushall(t, h)
	waitBlocked(t, h, "flushall", 2)

	writeFile(t, h.path, respConfig(target, `"FLUSHALL", "FLUSHDB"`)) // a changed config
	if r := h.waitReload(); r.Err != nil {
		t.Fatal(r.Err)
	}
	waitBlocked(t, h, "flushall", 0) // the old version's series is gone with it
	waitBlocked(t, h, "flushdb", 0)
}

// state_max_value and state_max_total set the bounds of a plugin's shared
// state, within 8 B to 256 MiB.
func TestStateBoundsAttributes(t *testing.T) {
	t.Parallel()
	src := `
plugin "rl" {
  builtin         = "ratelimit"
  state_max_value = "1KiB"
  state_max_total = "2MiB"
}
plugin "bad" {
  builtin         = "noop"
  state_max_total = "4B"
}
`
	f, diags := ParseSource([]byte(src), "t.hcl", Options{})
	if len(f.Plugins) != 2 || f.Plugins[0].StateMaxValue != 1<<10 || f.Plugins[0].StateMaxTotal != 2<<20 {
		t.Fatalf("plugins %+v", f.Plugins)
	}
	if got := FormatDiagnostics(diags, f.Files); !strings.Contains(got, `state_max_total = "4B" is out of range: it must be from 8B to 256MiB.`) {
		t.Fatalf("diagnostics:\n%s", got)
	}
}
