package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/plugstats"
)

// memConfig is stampConfig with the plugin's memory settings and a
// plugin_memory_limit.
func memConfig(target, stamp, limit string) string {
	return fmt.Sprintf(`
plugin_memory_limit = %q
plugin "p" {
  path         = "plugin.wasm"
  memory_limit = "64MiB"
  instances    = 2
}
route "r" {
  listen = "127.0.0.1:0"
  target = %q
  chain {
    plugin = plugin.p
    config = %q
  }
}
`, limit, target, stamp)
}

// validate (Parse) sums memory_limit × instances over the chain links and
// reports a file over plugin_memory_limit, at the attribute, naming each
// link; without the attribute the limit is half the machine's memory;
// with no plugin_memory_limit the diagnostic is at the largest plugin.
func TestPluginMemoryLimit(t *testing.T) {
	t.Parallel()
	_, diags := ParseSource([]byte(memConfig("127.0.0.1:1", "s", "100MiB")), "m.hcl", Options{})
	want := `m.hcl:2,23-31: Plugin memory over the limit; The plugins may take 128MiB (route "r" plugin "p" 2 × 64MiB), more than plugin_memory_limit = "100MiB". Lower memory_limit or instances, or raise plugin_memory_limit.`
	if len(diags) != 1 || diags[0].Error() != want {
		t.Errorf("got %v\nwant %s", diags, want)
	}
	if _, diags := ParseSource([]byte(memConfig("127.0.0.1:1", "s", "128MiB")), "m.hcl", Options{}); diags.HasErrors() {
		t.Errorf("at the limit: %v", diags)
	}
	src := `
plugin "small" {
  path = "a.wasm"
  memory_limit = "256MiB"
  instances = 1
}
plugin "big" {
  path = "b.wasm"
  memory_limit = "512MiB"
  instances = 2
}
route "a" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain { plugin = plugin.small }
  chain { plugin = plugin.big }
}
`
	f, diags := ParseSource([]byte(src), "d.hcl", Options{})
	if total, limit := f.PluginMemory(); total != 1280<<20 || limit != DefaultPluginMemoryLimit() || limit < MinDefaultPluginMemoryLimit {
		t.Errorf("PluginMemory() = %d, %d", total, limit)
	}
	if over := DefaultPluginMemoryLimit() < 1280<<20; over != diags.HasErrors() {
		t.Errorf("default limit %d: %v", DefaultPluginMemoryLimit(), diags)
	}
	f.PluginMemoryLimit = 1 << 30
	want = `d.hcl:7,1-13: Plugin memory over the limit; The plugins may take 1280MiB (route "a" plugin "small" 1 × 256MiB, route "a" plugin "big" 2 × 512MiB), more than plugin_memory_limit = "1GiB". Lower memory_limit or instances, or raise plugin_memory_limit.`
	if d := checkMemory(f, nil); d == nil || d.Error() != want {
		t.Errorf("got %v\nwant %s", d, want)
	}
}

// A reload counts the instances the running configuration keeps for its
// open connections: a file that fits alone is refused while they would
// take it over the limit (and the running configuration stays), and
// applied once they have ended.
func TestReloadCountsDrainingPlugins(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	h := start(t, memConfig(target, "v1:", "160MiB"))
	addr := h.addr()
	c := dial(t, addr)
	roundTrip(t, c, "a", `"v1:"a`) // one instance, one connection

	writeFile(t, h.path, memConfig(target, "v2:", "160MiB"))
	r := h.waitReload()
	var le *LoadError
	if !errors.As(r.Err, &le) || len(le.Diags) != 1 {
		t.Fatalf("reload = %+v, want one diagnostic", r)
	}
	want := `The plugins may take 128MiB (route "r" plugin "p" 2 × 64MiB), and the running configuration's plugins keep 64MiB until their connections end (plugin "p" 1 × 64MiB for 1 connection(s)): 192MiB in all, more than plugin_memory_limit = "160MiB". Lower memory_limit or instances, or raise plugin_memory_limit.`
	if d := le.Diags[0]; d.Summary != "Plugin memory over the limit" || d.Detail != want || d.Subject.Start.Line != 2 {
		t.Errorf("diagnostic %v\nwant %s", d, want)
	}
	roundTrip(t, c, "b", `"v1:"b`)
	c2 := dial(t, addr)
	roundTrip(t, c2, "c", `"v1:"c`)
	if !strings.Contains(h.log.String(), `msg="configuration error" at=`+h.path+`:2:23 summary="Plugin memory over the limit"`) {
		t.Errorf("log:\n%s", h.log)
	}

	// Once the connections have ended, the same file is applied: the
	// running plugin's instances are freed with the swap.
	c.Close()
	c2.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(plugstats.HeldBy(h.r.rt, nil)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still held: %+v", plugstats.HeldBy(h.r.rt, nil))
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.hup <- nil
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload = %+v", r)
	}
	roundTrip(t, dial(t, addr), "d", `"v2:"d`)
}

// Settings shows each plugin's limits with the defaults filled in, and the
// sum against plugin_memory_limit.
func TestSettings(t *testing.T) {
	t.Parallel()
	src := `
plugin_memory_limit = "1GiB"
plugin "a" {
  path = "a.wasm"
  instances = 2
}
plugin "b" {
  path = "b.wasm"
  memory_limit = "16MiB"
  instances = 3
  trusted = true
  on_failure = "bypass"
  trip_failures = 0
  log_rate = 5
  log_burst = 10
}
route "r" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain { plugin = plugin.a }
  chain { plugin = plugin.b }
}
`
	f, diags := ParseSource([]byte(src), "s.hcl", Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := []string{
		`plugin "a": 2 × 64MiB, call_timeout 1s, on_failure close, trips after 5 failures in 10s, backoff 1s to 1m, logs 100/s (burst 200)`,
		`plugin "b": 3 × 16MiB, trusted (no call_timeout), on_failure bypass, never trips, logs 5/s (burst 10)`,
		`plugin memory: 176MiB of plugin_memory_limit 1GiB`,
	}
	if got := f.Settings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
