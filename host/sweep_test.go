package host

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestSweepMovesIdlePumps checks that the pumps of idle filtered connections
// move to fresh goroutines, that this gives back the stack that calls into a
// WebAssembly guest grew, and that the connections forward as before.
func TestSweepMovesIdlePumps(t *testing.T) {
	swept := make(chan struct{}, 1)
	hook := func() {
		select {
		case swept <- struct{}{}:
		default:
		}
	}
	sweepHook.Store(&hook)
	defer sweepHook.Store(nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	ctx := context.Background()
	rt, err := NewRuntime(ctx, RuntimeOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	bin, err := os.ReadFile("testdata/noop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.Compile(ctx, "noop", bin)
	if err != nil {
		t.Fatal(err)
	}
	noop, err := m.Hook(ctx, PluginOptions{})
	m.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Logger: slog.New(slog.DiscardHandler)}
	if err := p.Apply([]Route{{Name: "s", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: []Link{{Name: "noop", Hook: noop}}}}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const conns = 100
	clients := make([]net.Conn, conns)
	echo := func(c net.Conn, msg string) {
		t.Helper()
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %q: got %q, %v", msg, got, err)
		}
	}
	for i := range clients {
		c, err := net.Dial("tcp", p.Addr("s").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		echo(c, "ping")
		clients[i] = c
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// A pump moves once it has been idle across a whole sweep interval.
	moved := 0
	for sweeps := 0; moved < 2*conns; sweeps++ {
		if sweeps == 20 {
			t.Fatalf("after %d sweeps, %d of %d pumps waiting on a fresh goroutine", sweeps, moved, 2*conns)
		}
		select {
		case <-swept:
		case <-time.After(time.Minute):
			t.Fatal("no sweep within a minute")
		}
		moved = movedPumps()
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	freed := (int64(before.StackInuse) - int64(after.StackInuse)) / conns
	t.Logf("stack per connection given back by the move: %d bytes (stacks in use %d -> %d KiB)", freed, before.StackInuse>>10, after.StackInuse>>10)
	if freed < 2<<10 {
		t.Errorf("moving the pumps gave back %d bytes of stack per connection, want at least 2 KiB", freed)
	}
	for i, c := range clients {
		echo(c, strings.Repeat("x", i+1))
	}
}

// movedPumps counts the goroutines waiting in a filtered pump that a
// previous pump started: the ones a sweep moved.
func movedPumps() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "host.(*conn).filtered(") && strings.Contains(g, "created by github.com/tunnelwasm/tunnel/host.(*conn).pump") {
			n++
		}
	}
	return n
}

// quitFilter answers "bye" to a client that sends "quit" and closes the
// connection; everything else passes.
type quitFilter struct{ PassThrough }

func (quitFilter) Open(*ConnInfo) (Filter, error) { return quitFilter{}, nil }

func (quitFilter) Data(dir Direction, chunk []byte, s *Stream) error {
	if dir == ClientToServer && string(chunk) == "quit" {
		if err := s.Send(ServerToClient, []byte("bye")); err != nil {
			return err
		}
		s.Close()
		return nil
	}
	return s.Send(dir, chunk)
}

// TestSweepThenFilterClose checks that a connection whose pumps were moved
// still closes gracefully when a filter asks: the answer arrives whole,
// followed by a clean end of stream, not a reset.
func TestSweepThenFilterClose(t *testing.T) {
	swept := make(chan struct{}, 1)
	hook := func() {
		select {
		case swept <- struct{}{}:
		default:
		}
	}
	sweepHook.Store(&hook)
	defer sweepHook.Store(nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p := &Proxy{Logger: slog.New(slog.DiscardHandler)}
	if err := p.Apply([]Route{{Name: "q", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: []Link{{Name: "quit", Hook: quitFilter{}}}}}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr("q").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	for sweeps := 0; movedPumps() < 2; sweeps++ {
		if sweeps == 20 {
			t.Fatalf("pumps not moved after %d sweeps", sweeps)
		}
		select {
		case <-swept:
		case <-time.After(time.Minute):
			t.Fatal("no sweep within a minute")
		}
	}
	if _, err := io.WriteString(c, "quit"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after quit: got %q, %v; want \"bye\" and a clean end of stream", rest, err)
	}
}
