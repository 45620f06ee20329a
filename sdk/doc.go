// Package sdk is what a tunnel plugin written in Go imports. A plugin is an
// ordinary Go program compiled to WebAssembly with the standard toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o upper.wasm ./upper
//
// The package implements the guest side of the tunnel's plugin ABI
// (sdk/ABI.md): its exports, imports and input buffer live here, so a
// plugin never sees a pointer. The plugin's package main registers a
// [Factory] and has an empty main:
//
//	package main
//
//	import (
//		"bytes"
//		"fmt"
//
//		"github.com/tunnelwasm/tunnel/sdk"
//	)
//
//	func init() { sdk.Register(newPlugin) }
//
//	func main() {}
//
//	type config struct {
//		Greeting string `json:"greeting"`
//	}
//
//	type plugin struct{ cfg config }
//
//	// newPlugin checks the route's config block (handed over as JSON).
//	func newPlugin(raw []byte) (sdk.Plugin, error) {
//		p := &plugin{}
//		if err := sdk.DecodeConfig(raw, &p.cfg); err != nil {
//			return nil, fmt.Errorf("upper: %w", err)
//		}
//		return p, nil
//	}
//
//	// NewConn makes the handler of one connection; it may refuse it.
//	func (p *plugin) NewConn(c *sdk.Conn) (sdk.Handler, error) {
//		if p.cfg.Greeting != "" {
//			c.Send(sdk.ServerToClient, []byte(p.cfg.Greeting))
//		}
//		return &handler{}, nil
//	}
//
//	type handler struct{ sdk.DefaultHandler }
//
//	// OnData upper-cases what the client sends.
//	func (h *handler) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
//		if dir != sdk.ClientToServer {
//			return sdk.Forward
//		}
//		c.Send(dir, bytes.ToUpper(data))
//		return sdk.Drop
//	}
//
// # How a plugin runs
//
// The host calls the factory once per instance with the configuration. An
// instance serves many connections, one callback at a time, so anything
// that belongs to one connection lives in the [Handler] that NewConn
// returns (the handler can be the same value for every connection when it
// keeps no state: see [Shared]). For each connection the host calls
// NewConn, then OnData for every chunk of each direction — the last one of a
// direction with end set — then OnClose.
//
// OnData returns an [Action]: [Forward] passes the chunk on, [Drop] discards
// it, and what the handler sent with [Conn.Send] during the call stands, so
// Send + Drop rewrites. [Hold] asks to see the bytes again with the next
// chunk (to wait for a whole line or frame without copying). Chunk
// boundaries are wherever TCP put them: a plugin that looks for a pattern
// must expect it split across calls.
//
// Sending toward the reverse direction answers the sender (a reply to the
// client from a client -> server chunk); [Conn.CloseWrite] ends one
// direction and [Conn.Close] the connection, both after the bytes already
// sent. [Log] writes to the tunnel's log, [Stdout] to its standard output
// when the route grants it.
//
// # State and metrics shared by the instances
//
// Memory in a Plugin or a package variable is per instance. What every
// connection of the route must see goes in the plugin's shared state, a
// key-value store the host keeps outside the instances (it survives an
// instance's failure and an unchanged reload): [StateGet], [StateSet],
// [StateDelete], and the atomic [StateAdd] and [StateCompareAndSwap] for
// counting and read-modify-write across instances. The plugin's own
// metrics ([NewCounter], [NewGauge], [NewHistogram], defined in the factory
// or at first use) are added up by the host and served on the tunnel's
// /metrics as tunnel_plugin_<plugin>_<name>; updating them costs one host
// call and allocates nothing. Both are emulated by sdk/sdktest
// (sdktest.State and sdktest.Metric read them in tests).
//
// # Testing
//
// The same plugin code compiles natively, where package sdk/sdktest runs it
// in plain `go test` against an emulator of the host (feed chunks, read
// what comes out each way, check replies, closes and logs), and package
// host/plugintest runs the compiled .wasm through a real tunnel with the
// same test API. The plugins in the repository's plugins/ directory are
// tested both ways.
//
// # Resources
//
// The input buffer is [DefaultBufferSize] (64 KiB) unless [SetBufferSize]
// says otherwise. A Go guest starts with about 2.6 MiB of linear memory; a
// plugin that allocates nothing per chunk runs within a 4 MiB limit. The SDK
// allocates nothing per chunk: keep OnData allocation-free too (reuse
// buffers across calls) and the guest's garbage collector stays idle.
package sdk
