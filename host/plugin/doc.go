// Package plugin runs WebAssembly plugins (ABI v1 and v2, see sdk/ABI.md) in
// wazero's sandbox, as hooks of a [host.Proxy].
//
// A [Runtime] compiles a module once ([Runtime.Compile], checked against the
// ABI); [Module.NewPlugin] makes a [Plugin] of it with its own configuration
// and pool of instances, each connection pinned to one instance.
// [Runtime.Load] does both for a .wasm file. A Plugin is a [host.Hook]: put
// it in a route's chain. The Proxy never closes it; its maker does, once no
// route version uses it any more, typically from the route's OnRelease:
//
//	deny, err := rt.Load(ctx, "deny.wasm", plugin.Options{Config: cfg})
//	...
//	err = proxy.Apply([]host.Route{{
//		Name: "redis", Listen: ":6380", Target: "127.0.0.1:6379",
//		Chain:     []host.Link{{Name: "deny", Hook: deny}},
//		OnRelease: func() { deny.Close() },
//	}})
//
// Calls into a guest are bounded in time ([Options].CallTimeout), memory
// and output; a guest that fails is never called again, and its
// connections are closed or carry on without it ([Options].FailOpen).
//
// The ABI v2 shared state and metrics of a plugin live beside its pool, in
// an entry of the runtime's [Registry], not in an instance: they survive
// instance failures, and a reload that makes an identical Plugin (same
// Options.Route, name, config, state bounds and module bytes) hands it the
// same entry. [Plugin.State] and [Plugin.GuestMetrics] read them;
// [Registry.GuestMetrics] lists every plugin's metrics for export.
//
// The runtime is its own package so that a program that imports only
// package host, to proxy or to filter with Go hooks, does not link wazero.
package plugin
