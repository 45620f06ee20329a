package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseAdmin: the admin block's values and defaults; no block, no
// endpoint.
func TestParseAdmin(t *testing.T) {
	t.Parallel()
	route := "route \"r\" {\n  listen = \"127.0.0.1:9000\"\n  target = \"127.0.0.1:8080\"\n}\n"
	for _, tc := range []struct {
		src  string
		want *Admin
	}{
		{route, nil},
		{route + "admin {}\n", &Admin{Listen: DefaultAdminListen}},
		{route + "admin {\n  listen = \"[::1]:0\"\n  pprof = true\n  drain_delay = \"5s\"\n}\n", &Admin{Listen: "[::1]:0", Pprof: true, DrainDelay: 5 * time.Second}},
		{route + "admin {\n  listen = \"10.1.2.3:9901\"\n}\n", &Admin{Listen: "10.1.2.3:9901", Exposed: true}},
		// Port 0 never collides with a route's port.
		{"route \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:8080\"\n}\nadmin {\n  listen = \"127.0.0.1:0\"\n}\n", &Admin{Listen: "127.0.0.1:0"}},
	} {
		f, diags := ParseSource([]byte(tc.src), "t.hcl", Options{})
		if diags.HasErrors() {
			t.Fatalf("%s: %s", tc.src, FormatDiagnostics(diags, f.Files))
		}
		got := f.Admin
		if got != nil {
			got.DeclRange, got.ListenRange = tc.want.DeclRange, tc.want.ListenRange
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Admin = %+v, want %+v", tc.src, got, tc.want)
		}
	}
}

// TestRunnerAdminView: what the admin endpoint reads from a Runner:
// readiness across start and stop, the running configuration's summary, the
// counters of its Proxy, and the admin block of the first load kept across
// a reload that changes it.
func TestRunnerAdminView(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	src := func(pprof bool) string {
		return `
plugin "p" {
  path = "plugin.wasm"
}
admin {
  listen = "127.0.0.1:0"
  pprof  = ` + map[bool]string{false: "false", true: "true"}[pprof] + `
}
route "r" {
  listen = "127.0.0.1:0"
  target = "` + target + `"
  dump {
    enabled = false
  }
  chain {
    plugin = plugin.p
    config = "s:"
  }
}
`
	}
	var unstarted Runner
	if err := unstarted.Ready(); err == nil || err.Error() != "no configuration is running yet" {
		t.Errorf("Ready before Start: %v", err)
	}
	if s := unstarted.Config(); s != (*Summary)(nil) {
		t.Errorf("Config before Start: %v", s)
	}

	h := start(t, src(false))
	if err := h.r.Ready(); err != nil {
		t.Errorf("Ready after Start: %v", err)
	}
	if a := h.r.Admin(); a == nil || a.Listen != "127.0.0.1:0" || a.Pprof {
		t.Errorf("Admin() = %+v", a)
	}
	s := h.r.Config().(*Summary)
	content, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	if s.File != h.path || s.SHA256 != hex.EncodeToString(sum[:]) || time.Since(s.Loaded) > time.Minute {
		t.Errorf("summary: file %s sha256 %s loaded %v; want %s, %x, now", s.File, s.SHA256, s.Loaded, h.path, sum)
	}
	wantRoutes := []RouteSummary{{Name: "r", Listen: "127.0.0.1:0", Address: h.addr(), Target: target, Chain: []string{"p"}}}
	wantPlugins := []PluginSummary{{Name: "p", Path: filepath.Join(h.dir, "plugin.wasm")}}
	if !reflect.DeepEqual(s.Routes, wantRoutes) || !reflect.DeepEqual(s.Plugins, wantPlugins) {
		t.Errorf("summary routes %+v plugins %+v, want %+v and %+v", s.Routes, s.Plugins, wantRoutes, wantPlugins)
	}

	c := dial(t, h.addr())
	roundTrip(t, c, "hello", `"s:"hello`)
	if st := h.r.Stats(); len(st) != 1 || st[0].Route != "r" || st[0].Accepted != 1 || st[0].BytesFromClient != 5 {
		t.Errorf("Stats() = %+v, want route r with 1 connection and 5 bytes from the client", st)
	}

	// A reload that changes the admin block: logged, not applied.
	writeFile(t, h.path, src(true))
	if r := h.waitReload(); r.Err != nil {
		t.Fatalf("reload: %v", r.Err)
	}
	if a := h.r.Admin(); a.Pprof {
		t.Errorf("Admin() after the reload = %+v, want the first load's", a)
	}
	if !strings.Contains(h.log.String(), "the admin block changed") {
		t.Errorf("no warning about the changed admin block in the log:\n%s", h.log)
	}
	if s2 := h.r.Config().(*Summary); s2 == s || s2.SHA256 == s.SHA256 {
		t.Errorf("the summary did not follow the reload: %+v", s2)
	}

	h.r.Drain()
	if err := h.r.Ready(); err == nil || err.Error() != "draining: POST /drain or a shutdown asked new connections to go elsewhere" {
		t.Errorf("Ready after Drain: %v", err)
	}
	roundTrip(t, c, "still", `"s:"still`) // draining stops nothing
	c2 := dial(t, h.addr())
	roundTrip(t, c2, "new", `"s:"new`)
	c.Close()
	c2.Close()
	h.stop()
	if err := h.r.Ready(); err == nil {
		t.Error("Ready after Shutdown: nil")
	}
}
