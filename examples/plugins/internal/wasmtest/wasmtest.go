// Package wasmtest runs a prebuilt plugin (.wasm, any source language)
// through the real tunnel in a test: a host.Proxy on loopback with the
// plugin in its chain, loaded by host/plugin, between a real TCP client and
// a real server the test drives. It is what host/plugintest does for Go
// plugins, which it builds from source.
package wasmtest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
)

// Timeout bounds every wait.
const Timeout = 20 * time.Second

// Tunnel is a route through the plugin.
type Tunnel struct {
	t        testing.TB
	Addr     string // where clients connect
	accepted chan net.Conn
	logs     *Logs
}

// Logs keeps the messages the plugin logged.
type Logs struct {
	mu      sync.Mutex
	msgs    []string
	changed chan struct{} // closed and replaced at every message
}

// Enabled reports that every level is kept (slog.Handler).
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs returns l: the attributes are not kept (slog.Handler).
func (l *Logs) WithAttrs([]slog.Attr) slog.Handler { return l }

// WithGroup returns l: groups are not kept (slog.Handler).
func (l *Logs) WithGroup(string) slog.Handler { return l }

// Handle keeps the record's level and message (slog.Handler).
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return nil
}

// Messages returns the log lines so far, as "LEVEL message".
func (tn *Tunnel) Messages() []string {
	tn.logs.mu.Lock()
	defer tn.logs.mu.Unlock()
	return append([]string(nil), tn.logs.msgs...)
}

// WaitMessages waits until the plugin has logged at least n lines (e.g.
// from tunnel_on_close, which runs once both sockets are closed) and
// returns the lines.
func (tn *Tunnel) WaitMessages(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		tn.logs.mu.Lock()
		if len(tn.logs.msgs) >= n {
			msgs := append([]string(nil), tn.logs.msgs...)
			tn.logs.mu.Unlock()
			return msgs
		}
		if tn.logs.changed == nil {
			tn.logs.changed = make(chan struct{})
		}
		changed := tn.logs.changed
		tn.logs.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("wasmtest: want %d log lines, got %q", n, tn.Messages())
		}
	}
}

var (
	rtOnce sync.Once
	rt     *plugin.Runtime
	rtErr  error
)

func runtime(t testing.TB) *plugin.Runtime {
	t.Helper()
	rtOnce.Do(func() {
		// The Go plugins compared with are compiled once a run
		// (plugintest's cache directory).
		rt, rtErr = plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{CacheDir: plugintest.CacheDir(), Logger: slog.New(slog.DiscardHandler)})
	})
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	return rt
}

// Module compiles the .wasm file at path.
func Module(t testing.TB, path string) *plugin.Module {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ModuleBytes(t, b)
}

// ModuleBytes compiles a module.
func ModuleBytes(t testing.TB, b []byte) *plugin.Module {
	t.Helper()
	if len(b) > 1<<20 { // a Go guest: 30 s to compile under -race
		plugintest.Precompile(b)
	}
	m, err := runtime(t).Compile(context.Background(), "test", b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// Start puts the plugin at path, with config, in a route (both directions)
// to a server of the test's.
func Start(t testing.TB, path, config string) *Tunnel {
	t.Helper()
	m := Module(t, path)
	logs := &Logs{}
	plug, err := m.NewPlugin(context.Background(), plugin.Options{
		Name: "test", Config: []byte(config), Instances: 1, Logger: slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn := &Tunnel{t: t, accepted: make(chan net.Conn, 16), logs: logs}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tn.accepted <- c
		}
	}()
	px := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	if err := px.Apply([]host.Route{{
		Name: "test", Listen: "127.0.0.1:0", Target: ln.Addr().String(),
		Chain:     []host.Link{{Name: "test", Hook: plug}},
		OnRelease: func() { plug.Close() },
	}}); err != nil {
		plug.Close()
		ln.Close()
		t.Fatal(err)
	}
	tn.Addr = px.Addr("test").String()
	t.Cleanup(func() {
		px.Close()
		ln.Close()
	})
	return tn
}

// Dial connects a client through the tunnel and returns it with the
// server side of the connection.
func (tn *Tunnel) Dial() (client, server *net.TCPConn) {
	t := tn.t
	t.Helper()
	c, err := net.Dial("tcp", tn.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case s := <-tn.accepted:
		t.Cleanup(func() { s.Close() })
		return c.(*net.TCPConn), s.(*net.TCPConn)
	case <-time.After(Timeout):
		t.Fatal("wasmtest: the tunnel did not dial the server")
	}
	return nil, nil
}

// Read reads exactly n bytes from c.
func Read(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(Timeout))
	b := make([]byte, n)
	if k, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("wasmtest: want %d bytes, got %q: %v", n, b[:k], err)
	}
	return string(b)
}

// ReadAll reads c to its end.
func ReadAll(t testing.TB, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(Timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("wasmtest: read to the end: got %q: %v", b, err)
	}
	return string(b)
}

// InstanceMemory is the smallest memory limit, in 64 KiB pages, the plugin
// starts under with config: the linear memory of one instance after
// tunnel_init.
func InstanceMemory(t testing.TB, m *plugin.Module, config string) int {
	t.Helper()
	ok := func(pages int) bool {
		p, err := m.NewPlugin(context.Background(), plugin.Options{
			Name: "mem", Config: []byte(config), Instances: 1, MemoryLimit: uint64(pages) << 16,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err == nil {
			p.Close()
		}
		return err == nil
	}
	lo, hi := 0, 1024 // 64 MiB
	if !ok(hi) {
		t.Fatalf("wasmtest: the plugin does not start in %d pages", hi)
	}
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}
