// Package host is the tunnel as a library: listeners that accept TCP
// connections, dial a target for each one, and forward the bytes of both
// directions at once through an optional chain of hooks: Go callbacks, or
// sandboxed WebAssembly plugins, whose runtime is package
// [github.com/tunnelwasm/tunnel/host/plugin] (a program that only proxies,
// or uses Go hooks, does not link it).
//
// A [Proxy] serves a set of [Route]s. Each route listens on one address and
// forwards every accepted connection to its target. A route with no hook
// and an IP target is served, on Linux, by epoll event loops (one per CPU
// but one: one on two CPUs) that each accept from every such route's
// listener, dial and move bytes themselves, with no goroutine, buffer or
// pipe per idle connection. A route whose hooks are all [InlineHook]s (the
// sandboxed plugins and the capture are) gets an event loop of its own,
// which also runs the chain: one goroutine per route, not per connection,
// and a filter that stalls delays only its own route. Any other connection
// runs on two goroutines, one per direction. On either engine a direction
// with no hook is forwarded by the kernel (splice(2) through a pipe held
// only while bytes are in flight; io.Copy elsewhere), and with hooks every
// chunk read from one side goes through the chain, and what the chain
// sends on is written to the other side.
//
// A [Hook] makes one [Filter] per connection. A filter sees the connection
// open, every chunk of each direction, the end of each direction (the
// sender's half-close) and the close. Through its [Stream] it can forward a
// chunk, rewrite it (longer or shorter), drop it, hold it and send it later,
// write toward either peer (answer the sender), half-close one direction, or
// close the connection. A filter can also act when no byte arrives: a
// [TimerFilter] arms a timer ([Stream.SetTimer]) and may send, flush,
// half-close or close when it fires, and keep a half-close behind the bytes
// it delays ([Stream.DeferEnd]). A filter that delays bytes pauses the
// reads of their sender ([Stream.PauseRead]) so that TCP slows it down
// rather than the filter buffering what it keeps sending. On a route with [Route].LateDial the chain
// chooses the target from the client's first bytes ([Stream.SetTarget]),
// and a [DialFilter] is told when the target is connected, at the address
// it resolved to, and may refuse it.
// Filters note verdicts on their connection as tags ([Stream.SetTag]),
// which later links read and the close log line shows. [ChunkFunc] turns a
// plain function into a hook; [Dump] is the hook that prints the traffic.
//
// Forwarding follows TCP: a half-close is passed on (CloseWrite) and a
// connection is torn down only when both directions are finished, or at once
// on an error or reset. A slow reader slows its sender: the tunnel stops
// reading from one side while the other side is not taking bytes, so memory
// stays bounded.
//
// Teardown never waits: closing a connection closes its sockets, which
// wakes whatever waits on them, and [Proxy.Shutdown] returns by its
// context's deadline whatever the peers or the filters do. [Proxy.Stats]
// counts each route's connections, errors and bytes read from and written
// to each peer, open connections included.
//
// Apply can be called again at any time to swap the configuration in:
// connections already open keep the routes and hooks they started with.
// The Proxy closes nothing it did not create: the maker of a hook that must
// be closed (a plugin) closes it from [Route].OnRelease, which the Proxy
// calls once a version of the route is no longer applied and its last
// connection has ended.
package host
