// Package park lets a goroutine that waits for a socket to become readable
// end, and be started again when it is: an idle connection then costs no
// goroutine stack at all.
//
// A [Parker] is one epoll set and one goroutine blocked in epoll_wait. Park
// adds a socket to the set, one-shot and level-triggered (so bytes that
// arrived before the call wake it at once), and the Parker calls the given
// function once the socket is readable, has hung up or has an error. Unpark
// takes the wait back before it fires. Exactly one of the two happens: the
// function runs, or Unpark reports true.
//
// The socket stays owned by its *net.TCPConn (or any syscall.Conn): the
// Parker touches its descriptor only inside RawConn.Control, so a socket
// closed meanwhile is never confused with a later one given the same
// number; closing a socket also removes it from the set.
package park

import "errors"

// ErrNotSupported is returned by [New] where epoll is not available.
var ErrNotSupported = errors.New("park: not supported on this platform")

// ErrClosed is returned by [Parker.Park] after [Parker.Close].
var ErrClosed = errors.New("park: parker closed")
