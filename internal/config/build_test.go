package config

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

func newRuntime(t *testing.T) *plugin.Runtime {
	t.Helper()
	rt, err := plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func parseString(t *testing.T, dir, src string) (*File, hcl.Diagnostics) {
	t.Helper()
	path := filepath.Join(dir, "tunnel.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Parse(path, Options{})
}

// TestBuildReusesModules: a .wasm is compiled once however many links use
// it and however often the file is built; Retain lets go of files no longer
// named; plugins of an unapplied Set are released by Close.
func TestBuildReusesModules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rt := newRuntime(t)
	dir := t.TempDir()
	copyFile(t, "testdata/wasm/stamp.wasm", filepath.Join(dir, "stamp.wasm"))
	src := `
plugin "s" {
  path      = "stamp.wasm"
  instances = 1
}
route "a" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain {
    plugin = plugin.s
    config = "a"
  }
}
route "b" {
  listen = "127.0.0.1:1"
  target = "127.0.0.1:2"
  chain {
    plugin = plugin.s
    config = "b"
  }
  chain {
    plugin = plugin.s
    directions = "server_to_client"
  }
}
`
	f, diags := parseString(t, dir, src)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	b := &Builder{Runtime: rt}
	set, diags := b.Build(ctx, f, nil)
	if len(diags) > 0 || set == nil {
		t.Fatalf("Build: %v", diags)
	}
	if got := plugstats.Runtime(rt); got.Modules != 1 || got.Plugins != 3 {
		t.Errorf("after Build: %+v, want 1 module and 3 plugins", got)
	}
	if n := len(set.Routes[1].Chain); n != 2 || set.Routes[1].Chain[1].Directions != host.OnlyServerToClient || set.Routes[1].Chain[0].Name != "s" {
		t.Errorf("route b chain = %+v", set.Routes[1].Chain)
	}
	set.Close()
	if got := plugstats.Runtime(rt); got.Modules != 1 || got.Plugins != 0 {
		t.Errorf("after Set.Close: %+v, want the cached module only", got)
	}
	set, _ = b.Build(ctx, f, nil)
	if got := plugstats.Runtime(rt); got.Modules != 1 || got.Plugins != 3 {
		t.Errorf("after a second Build: %+v, want the same module reused", got)
	}
	// Applied, each route closes its own plugins when the Proxy releases it.
	set.Routes[0].OnRelease()
	if got := plugstats.Runtime(rt); got.Plugins != 2 {
		t.Errorf("after route a's OnRelease: %+v, want route b's 2 plugins left", got)
	}
	set.Routes[1].OnRelease()
	if got := plugstats.Runtime(rt); got.Plugins != 0 {
		t.Errorf("after route b's OnRelease: %+v, want no plugin", got)
	}

	// A file that no longer names stamp.wasm lets its module go.
	empty, _ := parseString(t, dir, `route "a" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
}
`)
	b.Retain(ctx, empty)
	if got := plugstats.Runtime(rt); got.Modules != 0 {
		t.Errorf("after Retain: %+v, want no module", got)
	}

	// Errors found before Build (prior) mean no Set, and nothing kept.
	f, _ = parseString(t, dir, src)
	prior := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "earlier"}}
	if set, _ := b.Build(ctx, f, prior); set != nil {
		t.Error("Build returned a Set despite prior errors")
	}
	if got := plugstats.Runtime(rt); got.Plugins != 0 {
		t.Errorf("after a failed Build: %+v, want no plugin", got)
	}
	b.Close(ctx)
	if got := plugstats.Runtime(rt); got.Modules != 0 {
		t.Errorf("after Builder.Close: %+v", got)
	}
}

// TestBuildDumpFirst: a dump block puts the dump first in the chain, nearest
// the client.
func TestBuildDumpFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	copyFile(t, "testdata/wasm/noop.wasm", filepath.Join(dir, "noop.wasm"))
	f, diags := parseString(t, dir, `
plugin "n" {
  path = "noop.wasm"
}
route "a" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  dump {
    format = "hex"
  }
  chain {
    plugin = plugin.n
  }
}
`)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	b := &Builder{Runtime: newRuntime(t)}
	defer b.Close(ctx)
	set, diags := b.Build(ctx, f, nil)
	if set == nil {
		t.Fatal(diags)
	}
	defer set.Close()
	chain := set.Routes[0].Chain
	if len(chain) != 2 || chain[0].Name != "dump" || chain[1].Name != "n" {
		t.Errorf("chain = %+v", chain)
	}
}

// TestPluginSettingsApply: the plugin block's settings reach the runtime, seen
// through guests of host/plugin/testdata: stdout is granted only when asked for,
// and call_timeout with on_failure decide what a looping guest does to its
// connection.
func TestPluginSettingsApply(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	guests, err := filepath.Abs("../../host/plugin/testdata")
	if err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
plugin "talk" {
  path   = "%[1]s/stdout.wasm"
  stdout = true
}
plugin "mute" {
  path   = "%[1]s/stdout.wasm"
}
plugin "loop_bypass" {
  path         = "%[1]s/loop.wasm"
  call_timeout = "50ms"
  on_failure   = "bypass"
}
plugin "loop_close" {
  path         = "%[1]s/loop.wasm"
  call_timeout = "50ms"
  on_failure   = "close"
  memory_limit = "2MiB"
  instances    = 1
}
route "talk" {
  listen = "127.0.0.1:0"
  target = %[2]q
  chain {
    plugin = plugin.talk
  }
  chain {
    plugin = plugin.mute
  }
}
route "bypass" {
  listen = "127.0.0.2:0"
  target = %[2]q
  chain {
    plugin = plugin.loop_bypass
  }
}
route "close" {
  listen = "127.0.0.3:0"
  target = %[2]q
  chain {
    plugin = plugin.loop_close
  }
}
`, guests, target)
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	writeFile(t, path, src)
	stdout := &testkit.Buffer{}
	r := &Runner{Path: path, Stdout: stdout, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := stdout.String(); got != "hello from the guest\n" {
		t.Errorf("stdout after start = %q, want one greeting (from the plugin granted stdout)", got)
	}

	// bypass: the guest times out on the first chunk and is skipped; the
	// bytes arrive anyway.
	b := dial(t, r.Addr("bypass").String())
	b.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := b.Write([]byte("through")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "through" {
		t.Fatalf("bypass policy: got %q, %v", got, err)
	}
	// call_timeout is the limit of every call, the first ones after the
	// instance's init calls (which get at least 10 s) included.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("bypass policy: the looping call was cut off after %s, want about its call_timeout of 50ms", d)
	}

	// close: the same failure closes the connection.
	c := dial(t, r.Addr("close").String())
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte("stuck"))
	start = time.Now()
	rest, err := io.ReadAll(c)
	if len(rest) != 0 || (err != nil && !strings.Contains(err.Error(), "connection reset")) {
		t.Errorf("close policy: got %q, %v after %v; want the connection closed with nothing", rest, err, time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("close policy: the looping call was cut off after %s, want about its call_timeout of 50ms", d)
	}
}

// TestMaxOutputApplies: max_output reaches the runtime. The burst guest
// sends 96 KiB in one call: within the default budget (4 MiB) it arrives,
// past max_output = "64KiB" the call fails and on_failure = "close" closes
// the connection.
func TestMaxOutputApplies(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	wasm, err := filepath.Abs("testdata/wasm/burst.wasm")
	if err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
plugin "roomy" {
  path = %[1]q
}
plugin "tight" {
  path       = %[1]q
  max_output = "64KiB"
}
route "roomy" {
  listen = "127.0.0.1:0"
  target = %[2]q
  chain {
    plugin = plugin.roomy
  }
}
route "tight" {
  listen = "127.0.0.2:0"
  target = %[2]q
  chain {
    plugin = plugin.tight
  }
}
`, wasm, target)
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	writeFile(t, path, src)
	r := &Runner{Path: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	roomy := dial(t, r.Addr("roomy").String())
	roundTrip(t, roomy, "x", string(make([]byte, 96<<10)))

	tight := dial(t, r.Addr("tight").String())
	tight.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := tight.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(tight)
	if len(rest) != 0 || (err != nil && !strings.Contains(err.Error(), "connection reset")) {
		t.Errorf("max_output 64KiB: got %d bytes, %v; want the connection closed with nothing", len(rest), err)
	}
}
