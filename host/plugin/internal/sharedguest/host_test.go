package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// These tests run the compiled guest in the real host, for what only the
// host has: instance failures, reloads and configured bounds.

// The runtime and module of the host tests, shared by them: compiling a Go
// guest takes seconds (a minute under -race). Each test uses routes of its
// own, so the shared Registry keeps their state apart.
var (
	hostOnce sync.Once
	hostMod  *plugin.Module
	hostReg  *plugin.Registry
	hostLogs *tn.Logs
	hostErr  error
)

// hostSetup returns the compiled guest, the Registry of its runtime and
// the runtime's log.
func hostSetup(t *testing.T) (*plugin.Module, *plugin.Registry, *tn.Logs) {
	t.Helper()
	hostOnce.Do(func() {
		// Starting it through plugintest fills plugintest's compilation
		// cache (from a process without -race), which this runtime reads.
		sdktest.MustStart(t, plugintest.Wasm(t, "."), sdktest.Options{})
		hostLogs, hostReg = tn.NewLogs(), plugin.NewRegistry()
		var rt *plugin.Runtime
		rt, hostErr = plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{
			Logger: hostLogs.Logger(), Registry: hostReg, CacheDir: plugintest.CacheDir()})
		if hostErr == nil {
			hostMod, hostErr = rt.Compile(context.Background(), "sharedguest", plugintest.Build(t, "."))
		}
	})
	if hostErr != nil {
		t.Fatal(hostErr)
	}
	return hostMod, hostReg, hostLogs
}

func hostPlugin(t *testing.T, m *plugin.Module, opts plugin.Options) *plugin.Plugin {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "shared"
	}
	p, err := m.NewPlugin(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// client is one connection through a tunnel whose chain is p.
type client struct {
	t *testing.T
	r *bufio.Reader
	w io.Writer
}

func dial(t *testing.T, addr string) *client {
	c := tn.Dial(t, addr)
	return &client{t: t, r: bufio.NewReader(c), w: c}
}

func tunnel(t *testing.T, p *plugin.Plugin) string {
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "shared", Hook: p})
	return addr
}

// do sends a command and returns the answer line, or the read error's text.
func (c *client) do(cmd string) string {
	c.t.Helper()
	if _, err := c.w.Write([]byte(cmd)); err != nil {
		return err.Error()
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSuffix(line, "\n")
}

// Values and metrics survive an instance failure: the guest panics (a
// trap), its connection is closed, and the fresh instance that serves the
// next connection reads what the failed one stored.
func TestStateSurvivesInstanceFailure(t *testing.T) {
	m, _, logs := hostSetup(t)
	p := hostPlugin(t, m, plugin.Options{Route: "failure", Instances: 1})
	addr := tunnel(t, p)
	a := dial(t, addr)
	if got := a.do("add n 5"); got != "= 5" {
		t.Fatalf("add: %q", got)
	}
	if got := a.do("panic"); !strings.HasPrefix(got, "error: ") {
		t.Fatalf("panic answered %q; the connection should have been closed", got)
	}
	logs.Wait(t, "sdk: panic in OnData: asked to", "plugin=shared")
	logs.Wait(t, "plugin failed", "plugin=shared", "policy=close")
	b := dial(t, addr)
	if got := b.do("add n 1"); got != "= 6" {
		t.Fatalf("after the failure, add answered %q, want = 6", got)
	}
	if v, ok := p.State("n"); !ok || len(v) != 8 || v[0] != 6 {
		t.Fatalf("Plugin.State(n) = % x, %v", v, ok)
	}
	var adds int64
	for _, mt := range p.GuestMetrics() {
		if mt.Name == "commands_total" && len(mt.Labels) == 1 && mt.Labels[0] == (plugin.Label{Name: "cmd", Value: "add"}) {
			adds = mt.Value
		}
	}
	if adds != 2 {
		t.Fatalf("commands_total{cmd=add} = %d after the failure, want 2 (%+v)", adds, p.GuestMetrics())
	}
}

// A reload that keeps the plugin unchanged (same route, name, config and
// module) hands the new Plugin the old one's state and metrics; another
// config, route or bound starts empty; the state is dropped with the last
// Plugin that used it.
func TestStateAcrossReloads(t *testing.T) {
	m, reg, _ := hostSetup(t)
	base := plugin.Options{Route: "r", Config: []byte(`{"a":1}`)}
	old := hostPlugin(t, m, base)
	a := dial(t, tunnel(t, old))
	if got := a.do("set k v1"); got != "ok" {
		t.Fatal(got)
	}
	// The reload builds the new version before the old one is released.
	same := hostPlugin(t, m, base)
	if v, ok := same.State("k"); !ok || string(v) != "v1" {
		t.Fatalf("unchanged plugin: state k = %q, %v; want v1", v, ok)
	}
	changed := base
	changed.Config = []byte(`{"a":2}`)
	otherRoute := base
	otherRoute.Route = "r2"
	otherBound := base
	otherBound.StateMaxTotal = 1 << 10
	for name, o := range map[string]plugin.Options{"config": changed, "route": otherRoute, "bound": otherBound} {
		if _, ok := hostPlugin(t, m, o).State("k"); ok {
			t.Errorf("another %s: the state is shared", name)
		}
	}
	old.Close()
	if v, ok := same.State("k"); !ok || string(v) != "v1" {
		t.Fatalf("after the old version closed: %q, %v", v, ok)
	}
	found := false
	for _, mt := range reg.GuestMetrics() {
		if mt.Route == "r" && mt.Name == "commands_total" && mt.Value == 1 && mt.FullName == "tunnel_plugin_shared_commands_total" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the Registry lost the old version's counter: %+v", reg.GuestMetrics())
	}
	same.Close()
	if _, ok := hostPlugin(t, m, base).State("k"); ok {
		t.Fatal("the state outlived the last plugin that used it")
	}
}

// The bounds of the state are the plugin's options; past them the guest
// gets StatusTooLarge (sdk.ErrTooLarge) and nothing changes.
func TestStateBoundsConfigured(t *testing.T) {
	m, _, _ := hostSetup(t)
	p := hostPlugin(t, m, plugin.Options{Route: "bounds", StateMaxValue: 10, StateMaxTotal: 30})
	c := dial(t, tunnel(t, p))
	for _, s := range []struct{ cmd, want string }{
		{"setn a 11", "sdk: too large"},
		{"setn a 10", "ok"}, // 11 bytes
		{"setn b 10", "ok"}, // 22
		{"setn c 10", "sdk: too large"},
		{"setn c 6", "ok"}, // 29
		{"setn a 11", "sdk: too large"},
		{"add d 1", "sdk: too large"}, // 1 + 8 more
		{"del a", "ok"},
		{"add d 1", "= 1"},
	} {
		if got := c.do(s.cmd); got != s.want {
			t.Fatalf("%q answered %q, want %q", s.cmd, got, s.want)
		}
	}
	if keys, n := p.StateSize(); keys != 3 || n != 11+7+9 {
		t.Fatalf("StateSize = %d keys, %d bytes", keys, n)
	}
}
