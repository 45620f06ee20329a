// Package testnet holds the loopback plumbing of the host package's
// integration tests: servers with an owner and an end, a Proxy wired to a
// log buffer the test can wait on, and helpers to move and check bulk data.
//
// Everything binds 127.0.0.1 only and is torn down by t.Cleanup, so a test
// that uses these helpers leaves no listener, connection or goroutine behind.
package testnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// Timeout bounds every wait of the tests: long enough for a loaded 2-core
// machine running -race, short enough that a deadlock fails the test
// instead of hanging the run.
const Timeout = 20 * time.Second

// Server is a loopback TCP server whose handler runs once per accepted
// connection, each in its own goroutine. Cleanup closes the listener and
// every connection still open, then waits for the handlers to return.
type Server struct {
	ln       *net.TCPListener
	mu       sync.Mutex
	conns    map[*net.TCPConn]struct{}
	accepted int
	wg       sync.WaitGroup
	acceptCh chan struct{}
}

// Serve starts a server on 127.0.0.1:0 that runs handler for every
// connection. The handler owns the connection but need not close it.
func Serve(t testing.TB, handler func(c *net.TCPConn)) *Server {
	t.Helper()
	return ServeAt(t, "127.0.0.1:0", handler)
}

// ServeAt is Serve on a given address.
func ServeAt(t testing.TB, addr string, handler func(c *net.TCPConn)) *Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ln := l.(*net.TCPListener)
	s := &Server{ln: ln, conns: map[*net.TCPConn]struct{}{}, acceptCh: make(chan struct{}, 1024)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.accepted++
			s.mu.Unlock()
			select {
			case s.acceptCh <- struct{}{}:
			default:
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handler(c)
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Accepted is how many connections the server has accepted so far.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// WaitAccepted blocks until the server has accepted n connections.
func (s *Server) WaitAccepted(t testing.TB, n int) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for s.Accepted() < n {
		select {
		case <-s.acceptCh:
		case <-deadline.C:
			t.Fatalf("server accepted %d connections, want %d", s.Accepted(), n)
		}
	}
}

// Close stops the server: listener, open connections, handlers.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Sink accepts connections on ln and discards what they send until EOF,
// then closes them. It returns when ln is closed. For benchmarks, which
// own ln: run it in its own goroutine.
func Sink(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

// Echo writes back everything it reads, then half-closes after EOF.
func Echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err == nil {
		c.CloseWrite()
	}
}

// Welcome is what SpeakFirst sends as soon as it accepts.
const Welcome = "Welcome!\n"

// SpeakFirst sends Welcome before reading anything, then echoes.
func SpeakFirst(c *net.TCPConn) {
	if _, err := io.WriteString(c, Welcome); err != nil {
		return
	}
	Echo(c)
}

// Logs is a concurrency-safe log sink: a slog text handler writes into it
// and tests wait for lines to appear.
type Logs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// NewLogs returns an empty log sink.
func NewLogs() *Logs { return &Logs{changed: make(chan struct{})} }

// Write appends p and wakes the waiters.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger is a debug-level slog.Logger writing text lines into l.
func (l *Logs) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Wait blocks until a log line contains every one of parts, and returns it.
func (l *Logs) Wait(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ch := l.changed
		text := l.buf.String()
		l.mu.Unlock()
		if line, ok := findLine(text, parts); ok {
			return line
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no log line contains %q; log:\n%s", parts, text)
		}
	}
}

// WaitCount blocks until n log lines contain every one of parts.
func (l *Logs) WaitCount(t testing.TB, n int, parts ...string) {
	t.Helper()
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		got := l.Count(parts...)
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%d log lines contain %q, want %d; log:\n%s", got, parts, n, l.String())
		}
	}
}

// Count returns how many log lines contain every one of parts.
func (l *Logs) Count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if _, ok := findLine(line, parts); ok {
			n++
		}
	}
	return n
}

func findLine(text string, parts []string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		ok := line != ""
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return line, true
		}
	}
	return "", false
}

// Route returns a route named name listening on 127.0.0.1:0 toward target
// through chain.
func Route(name, target string, chain ...host.Link) host.Route {
	return host.Route{Name: name, Listen: "127.0.0.1:0", Target: target, Chain: chain}
}

// Proxy applies routes to a new Proxy logging into the returned Logs.
// Cleanup closes the proxy.
func Proxy(t testing.TB, routes ...host.Route) (*host.Proxy, *Logs) {
	t.Helper()
	logs := NewLogs()
	p := &host.Proxy{Logger: logs.Logger()}
	t.Cleanup(func() { p.Close() })
	if err := p.Apply(routes); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return p, logs
}

// Tunnel starts a proxy with one route toward target through chain and
// returns the address clients dial.
func Tunnel(t testing.TB, target string, chain ...host.Link) (string, *host.Proxy, *Logs) {
	t.Helper()
	p, logs := Proxy(t, Route("test", target, chain...))
	return p.Addr("test").String(), p, logs
}

// Dial connects to addr; cleanup closes the connection. Every read and
// write on it fails after Timeout, so a deadlock fails the test.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := c.(*net.TCPConn)
	tc.SetDeadline(time.Now().Add(Timeout))
	t.Cleanup(func() { tc.Close() })
	return tc
}

// EchoOnce writes msg to c and fails the test unless the same bytes come
// back (c leads to an echo server).
func EchoOnce(t testing.TB, c io.ReadWriter, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("echo %q: write: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

// Random returns n pseudo-random bytes from seed (fast, reproducible).
func Random(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}).Read(b)
	return b
}

// Sum is the hex sha256 of b.
func Sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Received is what one side of a transfer read: its byte count and sha256.
type Received struct {
	N   int64
	Sum string
	Err error
}

// ReadSum reads r to EOF, hashing as it goes.
func ReadSum(r io.Reader) Received {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return Received{N: n, Sum: hex.EncodeToString(h.Sum(nil)), Err: err}
}

// Exchange writes out to c while reading c to EOF, half-closes after the
// write, and returns what it read. The write error, if any, wins.
func Exchange(c *net.TCPConn, out []byte) Received {
	wait := testkit.Upload(c, out)
	got := ReadSum(c)
	if err := wait(); err != nil && got.Err == nil {
		got.Err = err
	}
	return got
}

// bulkStep is the most ExchangeBulk writes between two moves of its write
// deadline.
const bulkStep = 1 << 20

// ExchangeBulk is Exchange for payloads that a loaded machine running
// -race may take longer than Timeout to move (tens of MiB each way, with
// other tests alongside): each direction's deadline is Timeout from its
// last progress (a read, a MiB written) instead of a fixed time, so a slow
// run is not taken for a hang while a direction that stops moving still
// fails within Timeout. It replaces any deadline set on c. Its error says
// how far the failed direction got.
func ExchangeBulk(c *net.TCPConn, out []byte) Received {
	werr := make(chan error, 1)
	go func() {
		for off := 0; off < len(out); {
			c.SetWriteDeadline(time.Now().Add(Timeout))
			n, err := c.Write(out[off:min(off+bulkStep, len(out))])
			off += n
			if err != nil {
				werr <- fmt.Errorf("after writing %d of %d bytes: %w", off, len(out), err)
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	got := ReadSum(progressReader{c})
	if got.Err != nil {
		got.Err = fmt.Errorf("after reading %d bytes: %w", got.N, got.Err)
	}
	if err := <-werr; err != nil {
		got.Err = errors.Join(err, got.Err) // the write error first
	}
	return got
}

// progressReader moves c's read deadline to Timeout from now before each
// read.
type progressReader struct{ c *net.TCPConn }

func (r progressReader) Read(p []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(Timeout))
	return r.c.Read(p)
}

// IsClosed reports whether err is what a reader sees when the peer closed
// or reset the connection.
func IsClosed(err error) bool {
	return err == io.EOF || errors.Is(err, net.ErrClosed) || IsReset(err)
}

// IsReset reports whether err is what a reader or writer sees when the
// peer reset the connection (a RST, not a FIN).
func IsReset(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) {
		return false
	}
	s := op.Err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// Context returns a context that ends after Timeout or at cleanup.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Wait receives from ch, or fails the test when nothing comes within
// 2 × Timeout: what, e.g. "the server's bytes", says what never came. A
// test that waits on another goroutine's end then fails with a message
// instead of hanging until go test's own timeout.
func Wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(2 * Timeout):
		t.Fatalf("%s did not come within %v", what, 2*Timeout)
		panic("unreachable")
	}
}
