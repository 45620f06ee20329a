package host_test

import (
	"io"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// routeStats returns the counters of the route named name.
func routeStats(t *testing.T, p *host.Proxy, name string) host.RouteStats {
	t.Helper()
	for _, s := range p.Stats() {
		if s.Route == name {
			return s
		}
	}
	t.Fatalf("no stats for route %q in %+v", name, p.Stats())
	return host.RouteStats{}
}

// waitStats waits until the route's counters equal want: bytes are counted
// when the system call that wrote them returns, which can be after the
// peer has them (no event marks it, so this polls, bounded by tn.Timeout).
func waitStats(t *testing.T, p *host.Proxy, want host.RouteStats, what string) {
	t.Helper()
	deadline := time.Now().Add(tn.Timeout)
	for {
		s := routeStats(t, p, want.Route)
		if s == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %+v, want %+v", what, s, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStats: per-route counters on both engines, with the bytes of open
// connections counted while they live, and failed dials and idle timeouts
// counted apart.
func TestStats(t *testing.T) {
	for _, path := range enginePaths[:3] { // loop, goroutines (spliced), filtered
		t.Run(path.name, func(t *testing.T) {
			srv := tn.Serve(t, tn.Echo)
			down := freeAddr(t)
			idle := path.route(t, "idle", srv.Addr())
			idle.Listen = "127.0.0.1:0"
			idle.IdleTimeout = 200 * time.Millisecond
			p, logs := tn.Proxy(t, path.route(t, "echo", srv.Addr()), path.route(t, "down", down), idle)

			// An open connection: its bytes count before it ends.
			c := tn.Dial(t, p.Addr("echo").String())
			msg := []byte("0123456789")
			c.Write(msg)
			if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
				t.Fatal(err)
			}
			want := host.RouteStats{Route: "echo", Accepted: 1, Active: 1, BytesFromClient: 10, BytesToServer: 10, BytesFromServer: 10, BytesToClient: 10}
			waitStats(t, p, want, "open connection")
			c.Close()
			logs.Wait(t, "connection closed", "route=echo")
			want.Active = 0
			if s := routeStats(t, p, "echo"); s != want {
				t.Errorf("after close: %+v, want %+v", s, want)
			}

			expectRefused(t, p.Addr("down").String())
			logs.Wait(t, "connection closed", "route=down")
			if s := routeStats(t, p, "down"); s.Accepted != 1 || s.Active != 0 || s.Errors != 1 || s.DialFailures != 1 {
				t.Errorf("refused dial: %+v, want 1 accepted, 1 error, 1 dial failure", s)
			}

			c = tn.Dial(t, p.Addr("idle").String())
			expectClosed(t, c)
			logs.Wait(t, "connection closed", "route=idle")
			if s := routeStats(t, p, "idle"); s.Errors != 1 || s.IdleTimeouts != 1 || s.DialFailures != 0 {
				t.Errorf("idle timeout: %+v, want 1 error, 1 idle timeout", s)
			}
		})
	}
}
