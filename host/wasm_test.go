package host_test

import (
	"testing"

	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// wasmRuntime returns a plugin runtime for the engine tests that run a
// WebAssembly guest (hang_test.go); the runtime's own tests are in package
// plugin.
func wasmRuntime(t testing.TB) (*plugin.Runtime, *tn.Logs) { return tn.PluginRuntime(t) }

// wasmPlugin makes a plugin of the test guest plugin/testdata/<name>.wasm.
func wasmPlugin(t testing.TB, rt *plugin.Runtime, name string, opts plugin.Options) *plugin.Plugin {
	return tn.LoadPlugin(t, rt, name, "plugin/testdata/"+name+".wasm", opts)
}
