package host_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
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

// counts are the plain counters of a RouteStats, which compare with ==.
type counts struct {
	Route                                                          string
	Accepted, Active, Errors, DialFailures, IdleTimeouts           int64
	BytesFromClient, BytesToServer, BytesFromServer, BytesToClient int64
}

func countsOf(s host.RouteStats) counts {
	return counts{s.Route, s.Accepted, s.Active, s.Errors, s.DialFailures, s.IdleTimeouts,
		s.BytesFromClient, s.BytesToServer, s.BytesFromServer, s.BytesToClient}
}

// waitStats waits until the route's counters equal want: bytes are counted
// when the system call that wrote them returns, which can be after the
// peer has them (no event marks it, so this polls, bounded by tn.Timeout).
func waitStats(t *testing.T, p *host.Proxy, want host.RouteStats, what string) {
	t.Helper()
	deadline := time.Now().Add(tn.Timeout)
	for {
		s := countsOf(routeStats(t, p, want.Route))
		if s == countsOf(want) {
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
	t.Parallel()
	for _, path := range enginePaths[:3] { // loop, goroutines (spliced), filtered
		t.Run(path.name, func(t *testing.T) {
			srv := tn.Serve(t, tn.Echo)
			down := testkit.Refusing(t)
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
			if s := countsOf(routeStats(t, p, "echo")); s != countsOf(want) {
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

// TestStatsHistogramsAndReasons: on every engine, a finished connection is
// counted by close reason and in the duration histogram, a successful dial
// in the connect-time histogram, a failed one not; a filter's refusal at
// open is a rejection ("denied"). Every reason name is present, at 0 when
// nothing ended that way.
func TestStatsHistogramsAndReasons(t *testing.T) {
	t.Parallel()
	for _, path := range enginePaths[:3] {
		t.Run(path.name, func(t *testing.T) {
			srv := tn.Serve(t, tn.Echo)
			refuse := hookFunc(func(*host.ConnInfo) (host.Filter, error) { return nil, errors.New("not you") })
			deny := tn.Route("deny", srv.Addr(), host.Link{Name: "refuse", Hook: refuse})
			deny.Listen = "127.0.0.1:0"
			// A filter that answers and closes before the dial (a "busy"
			// banner, a rate limit) turns the client away too: inline on
			// the loop, on goroutines elsewhere.
			var banner host.Hook = busyHook{}
			if path.name == "loop" {
				banner = inlineHook{banner}
			}
			busy := path.route(t, "busy", srv.Addr())
			busy.Chain = append(busy.Chain, host.Link{Name: "busy", Hook: banner})
			p, logs := tn.Proxy(t, path.route(t, "echo", srv.Addr()), path.route(t, "down", testkit.Refusing(t)), deny, busy)

			for range 3 {
				c := tn.Dial(t, p.Addr("echo").String())
				c.Write([]byte("ping"))
				if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
					t.Fatal(err)
				}
				c.CloseWrite()
				expectClosed(t, c)
				c.Close()
			}
			logs.WaitCount(t, 3, "connection closed", "route=echo")
			expectRefused(t, p.Addr("down").String())
			logs.Wait(t, "connection closed", "route=down")
			expectRefused(t, p.Addr("deny").String())
			logs.Wait(t, "connection closed", "route=deny")
			c := tn.Dial(t, p.Addr("busy").String())
			if got, err := io.ReadAll(c); string(got) != "busy, try later\n" || err != nil {
				t.Fatalf("busy route: %q, %v; want the banner and the end", got, err)
			}
			c.Close()
			logs.Wait(t, "connection closed", "route=busy")

			echo := routeStats(t, p, "echo")
			if echo.Duration.Count != 3 || echo.Connect.Count != 3 || echo.Closed["client_eof"] != 3 {
				t.Errorf("echo: %d durations, %d connect times, closed %v; want 3, 3, client_eof 3", echo.Duration.Count, echo.Connect.Count, echo.Closed)
			}
			if echo.Duration.Sum <= 0 || echo.Duration.Sum > time.Duration(3)*tn.Timeout {
				t.Errorf("echo: duration sum %v, want above 0 and below 3 × %v", echo.Duration.Sum, tn.Timeout)
			}
			for _, r := range []string{"client_eof", "server_eof", "filter_close", "filter_error", "refused", "dial_failed", "idle_timeout", "reset", "shutdown"} {
				if _, ok := echo.Closed[r]; !ok {
					t.Errorf("echo: closed %v has no %q", echo.Closed, r)
				}
			}
			if len(echo.Rejected) != 4 || echo.Rejected["limit"] != 0 || echo.Rejected["denied"] != 0 || echo.Rejected["tls"] != 0 || echo.Rejected["no_route"] != 0 {
				t.Errorf("echo: rejected %v; want limit, denied, tls and no_route at 0", echo.Rejected)
			}
			down := routeStats(t, p, "down")
			if down.Connect.Count != 0 || down.Duration.Count != 1 || down.Closed["dial_failed"] != 1 {
				t.Errorf("down: %d connect times, %d durations, closed %v; want 0, 1, dial_failed 1", down.Connect.Count, down.Duration.Count, down.Closed)
			}
			denied := routeStats(t, p, "deny")
			if denied.Rejected["denied"] != 1 || denied.Closed["refused"] != 1 || denied.Connect.Count != 0 {
				t.Errorf("deny: rejected %v, closed %v, %d connect times; want denied 1, refused 1, 0", denied.Rejected, denied.Closed, denied.Connect.Count)
			}
			if b := routeStats(t, p, "busy"); b.Rejected["denied"] != 1 || b.Closed["filter_close"] != 1 || b.Connect.Count != 0 {
				t.Errorf("busy: rejected %v, closed %v, %d connect times; want denied 1, filter_close 1, 0", b.Rejected, b.Closed, b.Connect.Count)
			}
		})
	}
}
