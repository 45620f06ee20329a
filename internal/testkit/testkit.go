// Package testkit holds the test helpers that packages across the module
// share (cmd/, examples/, host/, internal/): one copy each, instead of one
// per package. Loopback only; everything a helper opens is closed by
// t.Cleanup.
package testkit

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// DefaultParallel sets -test.parallel to n unless the command line set it,
// for a package whose parallel tests mostly wait (on timeouts, lingers,
// child processes) rather than compute, so that they need not take turns
// for one slot per core. Call it from TestMain before m.Run; it parses the
// flags.
func DefaultParallel(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// Buffer is a bytes.Buffer safe for concurrent use: a log, a process's
// output or a key log that several goroutines write while a test reads it.
// The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of what was written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// FreeAddr returns a loopback address ("127.0.0.1:PORT") whose port was
// free a moment ago, for a test that must name a fixed port (two routes
// sharing it, a config file). The port is drawn below the kernel's
// ephemeral range (ip_local_port_range), so that the ports the kernel
// hands out meanwhile, to other tests' port-0 listeners and outgoing
// connections, cannot take it: one taken from that range was, once in a
// CI run with the tests in parallel ("bind: address already in use").
// A target that must refuse connections is Refusing: a port that is merely
// free may be taken by another test's listener meanwhile.
func FreeAddr(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if from := max(low-12000, 1024); from < low {
		for range 50 {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(from+rand.IntN(low-from)))
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				return addr
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ReceiveBuffer is a net.Dialer or net.ListenConfig Control that sets the
// socket's receive buffer (SO_RCVBUF) to n bytes before it connects, so
// that the window it advertises is small from the first segment: a
// slow reader whose kernel holds little on its behalf.
func ReceiveBuffer(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = setReceiveBuffer(fd, n) }); cerr != nil {
			return cerr
		}
		return err
	}
}

// Upload writes out to c and half-closes it, on a goroutine of its own, so
// that the caller can read c meanwhile (an echo of more than the socket
// buffers hold would otherwise deadlock); wait returns the write's error.
func Upload(c *net.TCPConn, out []byte) (wait func() error) {
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	return func() error { return <-werr }
}
