// Package extest runs the examples in tests: a tunnel (host.Proxy) in front
// of a server on loopback, an example's run function in-process with its
// output captured, and a writer whose lines a test can wait for.
package extest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
)

// Timeout bounds every wait, so a deadlock fails the test instead of
// hanging it.
const Timeout = 20 * time.Second

// Output is a concurrency-safe writer for an example's stdout or stderr.
type Output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// NewOutput returns an empty Output.
func NewOutput() *Output { return &Output{changed: make(chan struct{})} }

// Write appends p and wakes the waiters.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Wait blocks until the output matches the regular expression re and
// returns the first match's submatches.
func (o *Output) Wait(t testing.TB, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		o.mu.Lock()
		ch, text := o.changed, o.buf.String()
		o.mu.Unlock()
		if m := rx.FindStringSubmatch(text); m != nil {
			return m
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("output never matched %q; it is:\n%s", re, text)
		}
	}
}

// RunFunc is the shape of every example's run function.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Start runs an example server in-process with args and waits until it
// prints "listening on ADDR". Cleanup cancels it and checks that it exits
// with status 0.
func Start(t testing.TB, run RunFunc, args ...string) (addr string, stdout *Output) {
	t.Helper()
	stdout, stderr := NewOutput(), NewOutput()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("exit status %d after cancel; stderr:\n%s", c, stderr)
			}
		case <-time.After(Timeout):
			t.Errorf("example did not stop within %v of its cancel", Timeout)
		}
	})
	m := stdout.Wait(t, `listening on (\S+)`)
	return m[1], stdout
}

// Tunnel puts a tunnel (a host.Proxy with one route and the given chain)
// in front of target and returns the address clients dial. Cleanup closes it.
func Tunnel(t testing.TB, target string, chain ...host.Link) string {
	t.Helper()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { p.Close() })
	if err := p.Apply([]host.Route{{Name: "example", Listen: "127.0.0.1:0", Target: target, Chain: chain}}); err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	return p.Addr("example").String()
}

// Dial connects to addr with every read and write bounded by Timeout;
// cleanup closes the connection.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(Timeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// Lines splits s into its non-empty lines.
func Lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
