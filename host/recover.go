package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
)

// A PanicError is a panic of a hook or filter, recovered by the proxy: the
// connection it happened in is aborted with it (Reason filter_error), as
// with an error returned, and the other connections carry on. The panic's
// stack is logged once, at level Error, when it is recovered. A panic of a
// route's WireTap is recovered likewise, and one of a callback of its TLS
// or UpstreamTLS config fails that handshake (Reason tls or dial_failed).
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error returns "panic: " and the panic's value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// errNilFilter: a Hook's Open returned neither a filter nor an error.
var errNilFilter = errors.New("the hook's Open returned a nil Filter and no error (return PassThrough{} to leave a connection alone)")

// errNilWireTap: a Route.WireTap returned no connection to run TLS over.
var errNilWireTap = errors.New("the route's WireTap returned a nil net.Conn (return the socket it was given to leave it untapped)")

// The calls into user code. Each recovers a panic into a *PanicError, so
// that the caller's locks and counters unwind as for a returned error.

func (c *conn) recovered(what string, err *error) {
	if r := recover(); r != nil {
		pe := &PanicError{Value: r, Stack: debug.Stack()}
		c.p.logger().Error("panic in a filter; closing its connection", "conn", c.info.ID, "route", c.rs.Name, "in", what, "panic", fmt.Sprint(r), "stack", string(pe.Stack))
		*err = pe
	}
}

func (c *conn) callWireTap(nc net.Conn) (tapped net.Conn, err error) {
	defer c.recovered("WireTap", &err)
	if tapped = c.rs.WireTap(&c.info, nc); tapped == nil {
		err = errNilWireTap
	}
	return tapped, err
}

// handshake runs tc's TLS handshake. The tls.Config's callbacks
// (GetCertificate, VerifyConnection, ...) and a WireTap's Read and Write
// run in it: a panic of theirs fails the handshake, not the process.
func (c *conn) handshake(ctx context.Context, tc *tls.Conn) (err error) {
	defer c.recovered("TLS handshake", &err)
	return tc.HandshakeContext(ctx)
}

func (c *conn) callOpen(h Hook) (f Filter, err error) {
	defer c.recovered("Open", &err)
	if f, err = h.Open(&c.info); err == nil && f == nil {
		err = errNilFilter
	}
	return f, err
}

func (c *conn) callOpened(f Filter, s *Stream) (err error) {
	defer c.recovered("Opened", &err)
	return f.Opened(s)
}

func (c *conn) callData(f Filter, dir Direction, b []byte, s *Stream) (err error) {
	defer c.recovered("Data", &err)
	return f.Data(dir, b, s)
}

func (c *conn) callDialled(f DialFilter, s *Stream) (err error) {
	defer c.recovered("Dialled", &err)
	return f.Dialled(s)
}

func (c *conn) callEnd(f Filter, dir Direction, s *Stream) (err error) {
	defer c.recovered("End", &err)
	return f.End(dir, s)
}

func (c *conn) callTimer(f TimerFilter, s *Stream) (err error) {
	defer c.recovered("Timer", &err)
	return f.Timer(s)
}

func (c *conn) callClosed(f Filter, e End) {
	var err error
	defer c.recovered("Closed", &err) // logged; the connection is ending anyway
	if ef, ok := f.(EndFilter); ok {
		ef.ClosedWith(e)
		return
	}
	f.Closed()
}
