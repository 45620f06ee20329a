package host

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/tunnelwasm/tunnel/internal/tlsconf"
)

// The TLS sessions of a connection. A route that terminates TLS
// (Route.TLS) has a *tls.Conn on the client side, one that originates it
// (Route.UpstreamTLS) one on the server side. Who owns what:
//
//   - the raw TCP sockets stay the connection's, and teardown shuts down and
//     closes only them: a tls.Conn's Close would write an alert and so could
//     wait for a peer that does not read; closing the raw socket wakes a
//     tls.Conn's reader and writer at once;
//   - the tls.Conn's reads belong to the pump of the direction it is the
//     source of, its writes to the writers of the other direction (wmu);
//   - a graceful close sends close_notify from a goroutine of its own,
//     bounded by the linger deadline and by finish, which closes the socket.
//
// TLS directions are never spliced (the kernel sees ciphertext). The
// sweeper moves them like other filtered directions: crypto/tls does not
// keep a read deadline's timeout as the session's error.

// secureSide returns the tls.Conn of side 0 (client) or 1 (server), or nil.
func (c *conn) secureSide(server bool) *tls.Conn {
	if server {
		return c.serverTLS.Load()
	}
	return c.clientTLS
}

// secureSource returns the tls.Conn dir reads from, or nil.
func (c *conn) secureSource(dir Direction) *tls.Conn {
	return c.secureSide(dir == ServerToClient)
}

// secureDestination returns the tls.Conn dir writes to, or nil.
func (c *conn) secureDestination(dir Direction) *tls.Conn {
	return c.secureSide(dir == ClientToServer)
}

// usesTLS reports whether either side of the connection runs TLS.
func (c *conn) usesTLS() bool {
	return c.rs.TLS != nil || c.rs.UpstreamTLS != nil
}

// handshakeTimeout is the route's HandshakeTimeout or its default.
func (r *Route) handshakeTimeout() time.Duration {
	if r.HandshakeTimeout > 0 {
		return r.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// writeTo writes b toward dir's destination, through its TLS session if
// it has one.
func (c *conn) writeTo(dir Direction, b []byte) (int, error) {
	if tc := c.secureDestination(dir); tc != nil {
		return tc.Write(b)
	}
	return c.destination(dir).Write(b)
}

// closeWriteTo half-closes dir's destination: close_notify, then FIN. A
// peer that is already gone (it closed and reset the socket, as a client
// that got its answer does) leaves nothing to half-close: not an error.
func (c *conn) closeWriteTo(dir Direction) error {
	if tc := c.secureDestination(dir); tc != nil {
		tc.CloseWrite() // best effort: a failed alert shows in the FIN below
	}
	err := c.destination(dir).CloseWrite()
	if errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	return err
}

// acceptTLS runs the TLS handshake with the client (Route.TLS) over nc (the
// client's socket, or a replay of what was read from it). The deadline
// bounds it; an abort closes the socket and ends it at once.
func (c *conn) acceptTLS(nc net.Conn, deadline time.Time) error {
	tc := tls.Server(nc, c.rs.TLS)
	ctx, cancel := context.WithDeadline(c.p.hardCtx, deadline)
	defer cancel()
	c.dlMu.Lock()
	c.td.cancel = cancel // abort cancels it: certificate callbacks see it
	c.dlMu.Unlock()
	c.client.SetDeadline(deadline)
	err := c.handshake(ctx, tc)
	c.client.SetDeadline(time.Time{})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("tls handshake with the client: not done within %s (handshake_timeout)", c.rs.handshakeTimeout())
	}
	if err != nil {
		// A certificate that failed verification (another CA, expired):
		// name it, as a refusal by the allow rules does.
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
			return fmt.Errorf("tls handshake with the client: client certificate %s: %w", tlsconf.Subject(cve.UnverifiedCertificates[0]), err)
		}
		return fmt.Errorf("tls handshake with the client: %w", err)
	}
	c.clientTLS = tc
	st := tc.ConnectionState()
	info := &TLSInfo{ServerName: st.ServerName, ALPN: st.NegotiatedProtocol, Version: st.Version, Verified: len(st.VerifiedChains) > 0}
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		info.PeerSubject = leaf.Subject.String()
		info.PeerDNS = leaf.DNSNames
		for _, u := range leaf.URIs {
			info.PeerURIs = append(info.PeerURIs, u.String())
		}
	}
	c.p.mu.Lock() // Connections reads info under p.mu
	c.info.TLS = info
	c.p.mu.Unlock()
	return nil
}

// dialTLS runs the TLS handshake toward the target (Route.UpstreamTLS) on
// sc, within ctx (the dial's: its timeout, or an abort, ends it).
func (c *conn) dialTLS(ctx context.Context, sc *net.TCPConn, target string) (*tls.Conn, error) {
	cfg := c.rs.UpstreamTLS
	if cfg.ServerName == "" {
		// The target's host, verified or not, is the SNI a target routing
		// by name needs (crypto/tls sends none for an IP address).
		host, _, err := net.SplitHostPort(target)
		if err != nil {
			return nil, fmt.Errorf("tls toward %s: %w", target, err)
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(sc, cfg)
	if err := c.handshake(ctx, tc); err != nil {
		return nil, fmt.Errorf("tls handshake with %s: %w", target, err)
	}
	return tc, nil
}

// stepTLS is step for a direction whose source is a TLS session: one Read
// of the session, outside any socket callback (a tls.Conn reads through the
// net.Conn, whose Close wakes it).
func (c *conn) stepTLS(dir Direction, tc *tls.Conn) (step, error) {
	r := &c.rd[dir]
	if r.buf == nil {
		r.buf = getBuf()
	}
	n, err := tc.Read((*r.buf)[:cap(*r.buf)])
	switch {
	case c.td.closing.Load():
		return stepEnd, nil
	case n > 0:
		c.read[dir].Add(int64(n))
		if c.rs.IdleTimeout > 0 {
			c.lastIO.Store(time.Now().UnixNano())
		}
		return stepMore, c.ch.data(dir, (*r.buf)[:n])
	case err == nil:
		return stepMore, nil
	case errors.Is(err, io.EOF):
		r.release()
		c.sawEOF(dir)
		return stepEnd, c.ch.end(dir)
	case errors.Is(err, os.ErrDeadlineExceeded) && c.unpoke(dir, c.source(dir)):
		// A poke (a sweep, or a timer that chose the target): crypto/tls
		// keeps no timeout as the session's error, so the next Read goes
		// on where this one stopped. An idle direction holds no buffer.
		r.release()
		return stepMove, nil
	}
	return stepEnd, &peerError{"read", dir, err}
}

// closeWriteGracefully is closeGracefully's half-close of one side: a FIN,
// after close_notify on a TLS side. The alert is written by a goroutine of
// its own, since a writer may hold the session waiting on a peer that does
// not read; the linger deadline and finish (which closes the socket) end it.
func (c *conn) closeWriteGracefully(s *net.TCPConn, tc *tls.Conn, deadline time.Time) {
	if tc == nil {
		s.CloseWrite()
		return
	}
	s.SetWriteDeadline(deadline)
	c.p.connWG.Add(1) // Shutdown waits for it too; finish's Close ends it
	go func() {
		defer c.p.connWG.Done()
		tc.CloseWrite()
		s.CloseWrite()
	}()
}

// replayConn is a client socket as the TLS handshake reads it: bytes
// already read from it put back in front (a ClientHello read to choose
// the route), and whether any byte came at all (a health check leaves
// without one). Writes and everything else go to the socket.
type replayConn struct {
	*net.TCPConn
	pending []byte
	got     bool // a byte of the client was read (by the handshake)
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		r.pending = r.pending[n:]
		r.got = true
		return n, nil
	}
	n, err := r.TCPConn.Read(b)
	if n > 0 {
		r.got = true
	}
	return n, err
}

// writePrefix writes what was read from the client before the route was
// chosen (a spliced direction's first bytes) to dst.
func (c *conn) writePrefix(dst *net.TCPConn) error {
	b := c.prefix
	c.prefix = nil
	c.read[ClientToServer].Add(int64(len(b)))
	n, err := dst.Write(b)
	c.written[ClientToServer].Add(int64(n))
	if err != nil {
		return &peerError{"write", ClientToServer, err}
	}
	return nil
}
