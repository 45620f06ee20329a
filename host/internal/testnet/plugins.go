package testnet

import (
	"context"
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugin"
)

// PluginRuntime returns a plugin runtime logging into the returned Logs. It
// is closed at cleanup, after the proxies registered later.
func PluginRuntime(t testing.TB) (*plugin.Runtime, *Logs) {
	t.Helper()
	logs := NewLogs()
	rt, err := plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(context.Background()); err != nil {
			t.Errorf("runtime close: %v", err)
		}
	})
	return rt, logs
}

// LoadPlugin loads the plugin at path (a .wasm file) with opts; an empty
// opts.Name means name.
func LoadPlugin(t testing.TB, rt *plugin.Runtime, name, path string, opts plugin.Options) *plugin.Plugin {
	t.Helper()
	if opts.Name == "" {
		opts.Name = name
	}
	p, err := rt.Load(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return p
}
