//go:build !linux

package park

import "syscall"

// Parker is unavailable without epoll: New fails.
type Parker struct{}

// Ticket names one Park, for Unpark.
type Ticket uint64

// New reports ErrNotSupported.
func New() (*Parker, error) { return nil, ErrNotSupported }

// Park reports ErrNotSupported.
func (p *Parker) Park(syscall.RawConn, func()) (Ticket, error) { return 0, ErrNotSupported }

// ParkErrors reports ErrNotSupported.
func (p *Parker) ParkErrors(syscall.RawConn, func()) (Ticket, error) { return 0, ErrNotSupported }

// Unpark reports false.
func (p *Parker) Unpark(Ticket) bool { return false }

// Close does nothing.
func (p *Parker) Close() {}

// Len returns 0.
func (p *Parker) Len() int { return 0 }
