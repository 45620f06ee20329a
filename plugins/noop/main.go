// Command noop is the tunnel plugin that forwards every byte unchanged: the
// baseline for measuring what a plugin call costs.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o noop.wasm ./plugins/noop
package main

import (
	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

func newPlugin(config []byte) (sdk.Plugin, error) {
	var none struct{}
	if err := sdk.DecodeConfig(config, &none); err != nil {
		return nil, nofmt.Wrap("noop: takes no settings", err)
	}
	return sdk.Shared(sdk.DefaultHandler{}), nil
}
