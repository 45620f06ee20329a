// Package evloop forwards plain TCP connections with one epoll event loop
// run by one goroutine, at a cost close to nginx's stream proxy.
//
// # Design
//
// A [Loop] is one goroutine that drives every socket given to it with raw
// non-blocking system calls (accept4, connect, read/write or splice,
// shutdown, close) and blocks in epoll_wait between events, as an ordinary
// system call: its OS thread is not locked (see Loop.run for the figures
// behind that). There is no goroutine per connection and no
// time.AfterFunc per connection.
//
// Ownership: the loop owns every file descriptor handed to it (listeners,
// accepted and dialled sockets), every pipe and buffer used to move bytes,
// and every timer. A connection's state is read and written only on the
// loop thread, so it needs no locks. The only state shared with other
// goroutines is the inbox: [Listener.Resume], [Listener.Close],
// [Loop.AddListener], [Loop.Abort] and [Loop.Close] append a function to a
// mutex-protected slice and write an eventfd the loop polls; the loop runs
// the function on its own thread.
//
// Callbacks ([Acceptor] methods and [Plan].Done) run on the loop thread and
// must not block. They may call [Listener.Resume] but must not call the
// methods that wait for the loop ([Loop.Close], [Loop.Abort],
// [Loop.AddListener], [Listener.Close]): that would deadlock.
//
// # Readiness
//
// Every connected socket is registered once, edge-triggered, for
// EPOLLIN|EPOLLOUT|EPOLLRDHUP, and never modified afterwards: the loop
// records "readable" and "writable" flags from the events and clears a flag
// when a system call returns EAGAIN (or a read comes back short; a short
// read after an EPOLLRDHUP that was not a reset reached the FIN, so the end
// of stream is taken without the read that would return 0). Compared
// with level-triggered polling this needs no epoll_ctl on every change of
// backpressure and cannot spin on a half-closed socket. Backpressure is
// expressed by not reading: when the destination's send buffer is full the
// loop stops reading the source (its bytes stay in the kernel) until an
// EPOLLOUT edge arrives on the destination. Listeners are the exception:
// level-triggered, one accept4 per event (while the backlog holds more, the
// next epoll_wait reports it again, so no accept4 is made only to return
// EAGAIN, as with nginx's multi_accept off; up to 16 when it was reported
// in the previous turn too), and a listener paused by [Acceptor.Admit] is
// modified to an empty, edge-triggered event mask so the loop is not woken
// for clients waiting in the backlog (epoll reports a hang-up whatever the
// mask: edge-triggered, once).
//
// # Memory
//
// Each direction of a connection holds a buffer (small chunks: read and
// write) or a pipe (bulk: splice) only while bytes are pending; both return to small per-loop free lists as soon
// as the pending bytes are written, so an idle connection holds neither.
// At most one pipe or buffer per direction is ever held, which bounds the
// memory of a connection whose destination does not read.
//
// # Timers
//
// Dial and idle deadlines live in a min-heap of timers owned by the loop; the
// epoll_wait timeout is the time to the earliest one. The idle timer is
// re-armed lazily from a last-activity timestamp when it fires, so moving
// bytes never touches the heap.
//
// # Teardown
//
// Errors, idle timeouts, [Loop.Abort] and [Loop.Close] reset both sockets
// (SO_LINGER 0, then close) and never wait on a peer. An orderly close needs
// a FIN in both directions: a FIN from one side is forwarded with
// shutdown(SHUT_WR) once the pending bytes are written, while the other
// direction keeps flowing; the last one, when the other direction is over,
// by the close(2) that ends the connection (the same FIN, one call less).
//
// The package works on Linux only; elsewhere [New] returns [ErrNotSupported].
package evloop
