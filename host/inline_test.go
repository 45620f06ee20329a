package host_test

// Inline routes (host.InlineHook): the route's own event loop runs every
// filter callback of its connections on one goroutine, keeps a reloaded
// route's connections on the chain they started with, and stops when the
// last of them ends. The forwarding and filter tests (forward_test.go) and
// the hang tests' WebAssembly path run on this engine too.

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// goroutineID returns the calling goroutine's number (runtime.Stack's
// first line: "goroutine N [running]:").
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	return string(b[:bytes.IndexByte(b, ' ')])
}

// TestInlineRunsOnOneGoroutine: every callback of every connection of an
// inline route runs on one goroutine, the route's loop, and never on the
// goroutine of the test or of the listener.
func TestInlineRunsOnOneGoroutine(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	record := func() {
		mu.Lock()
		seen[goroutineID()]++
		mu.Unlock()
	}
	hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
		return &testFilter{
			opened: func(*host.Stream) error { record(); return nil },
			data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				record()
				return s.Forward(dir, chunk)
			},
		}, nil
	})
	srv := tn.Serve(t, tn.Echo)
	addr, _, logs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "where", Hook: inlineHook{hook}})
	const conns = 20
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tn.Dial(t, addr)
			msg := fmt.Sprintf("ping %d\n", i)
			if got := ask(t, c, msg); got != msg {
				t.Errorf("got %q, want %q", got, msg)
			}
			c.Close()
		}()
	}
	wg.Wait()
	for i := 1; i <= conns; i++ {
		logs.Wait(t, "connection closed", fmt.Sprintf("conn=%d ", i))
	}
	mu.Lock()
	defer mu.Unlock()
	calls := 0
	for _, n := range seen {
		calls += n
	}
	if len(seen) != 1 || calls != 3*conns {
		t.Errorf("%d callbacks on %d goroutines (%v); want %d on one", calls, len(seen), seen, 3*conns)
	}
	if _, ok := seen[goroutineID()]; ok {
		t.Error("a callback ran on the test's goroutine")
	}
}

// versionHook answers every client chunk with its version, so a client
// can tell which applied chain its connection runs.
func versionHook(v string) host.Hook {
	return inlineHook{hookFunc(func(*host.ConnInfo) (host.Filter, error) {
		return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
			if dir == host.ClientToServer {
				return s.Send(host.ServerToClient, []byte(v))
			}
			return nil
		}}, nil
	})}
}

// TestInlineReload: a reload gives the route a new loop and chain; the
// connection opened before it keeps the old ones until it ends, and then
// every loop is gone (noLeaks).
func TestInlineReload(t *testing.T) {
	noLeaks(t)
	srv := tn.Serve(t, tn.Echo)
	released := make(chan string, 2)
	route := func(v string) host.Route {
		r := tn.Route("r", srv.Addr(), host.Link{Name: v, Hook: versionHook(v)})
		r.OnRelease = func() { released <- v }
		return r
	}
	p, _ := tn.Proxy(t, route("v1\n"))
	addr := p.Addr("r").String()
	old := tn.Dial(t, addr)
	if got := ask(t, old, "ab\n"); got != "v1\n" {
		t.Fatalf("before the reload: %q", got)
	}
	if err := p.Apply([]host.Route{route("v2\n")}); err != nil {
		t.Fatal(err)
	}
	fresh := tn.Dial(t, addr)
	if got := ask(t, fresh, "ab\n"); got != "v2\n" {
		t.Errorf("a connection after the reload: %q, want v2", got)
	}
	if got := ask(t, old, "ab\n"); got != "v1\n" {
		t.Errorf("the connection from before the reload: %q, want v1", got)
	}
	select {
	case v := <-released:
		t.Fatalf("%q released while its connection is open", v)
	default:
	}
	old.Close()
	if v := <-released; v != "v1\n" {
		t.Errorf("released %q first, want v1", v)
	}
	fresh.Close()
	p.Close()
	if v := <-released; v != "v2\n" {
		t.Errorf("released %q, want v2", v)
	}
}

// TestApplyWhileLoopHandsOff: Apply adds listeners to the Proxy's loop
// while holding the Proxy's lock; meanwhile the loop hands connections of a
// route a reload made filtered (not inline) to goroutines. The hand-off
// used to take the same lock on the loop: both waited forever.
func TestApplyWhileLoopHandsOff(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	a := tn.Route("a", srv.Addr())
	a.Listen = testkit.FreeAddr(t)
	// Not tn.Proxy: its cleanup would wait forever for a deadlocked lock.
	p := &host.Proxy{Logger: tn.NewLogs().Logger()}
	if err := p.Apply([]host.Route{a}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closed := make(chan struct{})
		go func() { p.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(tn.Timeout):
			t.Error("Close did not return")
		}
	})
	addr := p.Addr("a").String()
	a2 := tn.Route("a", srv.Addr(), host.Link{Name: "f", Hook: hookFunc(func(*host.ConnInfo) (host.Filter, error) { return &testFilter{}, nil })})
	a2.Listen = addr
	b := tn.Route("b", srv.Addr()) // a new listener on the loop every other Apply
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.DialTimeout("tcp", addr, tn.Timeout); err == nil {
					c.Close()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; n < 400 && time.Now().Before(deadline); n++ {
		routes := []host.Route{a2}
		if n%2 == 0 {
			routes = append(routes, b)
		}
		done := make(chan error, 1)
		go func() { done <- p.Apply(routes) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(tn.Timeout):
			t.Fatalf("Apply %d did not return within %s: deadlocked with the loop", n, tn.Timeout)
		}
	}
}
