//go:build !linux

package evloop

import "log/slog"

// Loop is an epoll loop; on this platform it cannot be created.
type Loop struct{}

// New returns ErrNotSupported on this platform.
func New(logger *slog.Logger) (*Loop, error) { return nil, ErrNotSupported }

// Close does nothing on this platform.
func (l *Loop) Close() {}

// Abort does nothing on this platform.
func (l *Loop) Abort(cause error) {}

// Conns returns 0 on this platform.
func (l *Loop) Conns() int { return 0 }

// AddListener returns ErrNotSupported on this platform.
func (l *Loop) AddListener(fd int, a Acceptor) (*Listener, error) { return nil, ErrNotSupported }

// Listener is a listening socket of a Loop; it cannot exist on this platform.
type Listener struct{}

// Resume does nothing on this platform.
func (ln *Listener) Resume() {}

// Close does nothing on this platform.
func (ln *Listener) Close() {}

// Output is a connection's writer for its Chain; it cannot exist on this platform.
type Output struct{}
