package plugin_test

// Containment of hostile plugins: the crash-loop breaker and the log rate
// limit.

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
)

// fakeClock is a plugin's clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var logTime = regexp.MustCompile(`^time=\S+ `)

// waitLine waits for the log line containing every part and checks it is
// exactly want once its time is dropped.
func waitLine(t *testing.T, logs *tn.Logs, want string, parts ...string) {
	t.Helper()
	if got := logTime.ReplaceAllString(logs.Wait(t, parts...), ""); got != want {
		t.Errorf("log line\n%s\nwant\n%s", got, want)
	}
}

// The crash guest traps on a chunk starting with "!": two failures within
// the window trip it; while tripped a new connection is refused (close) or
// bypasses it (bypass) without an instance being made; a failure right
// after the backoff trips it again for twice as long; a successful call
// after the backoff recovers it, and the count starts again.
func TestWasmCrashLoopTrips(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			t.Parallel()
			rt, logs := wasmRuntime(t)
			p := wasmPlugin(t, rt, "crash", plugin.Options{Instances: 1, FailOpen: failOpen, TripFailures: 2, TripWindow: 10 * time.Second})
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			plugstats.SetClock(p, clock.now)
			srv := tn.Serve(t, tn.Echo)
			addr, _, plogs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "crash", Hook: p, Directions: host.OnlyClientToServer})
			policy, what := "close", "refused"
			if failOpen {
				policy, what = "bypass", "bypassed"
			}
			// crash sends its chunks on with a "+" in front; a bypassed or
			// failed one comes back as it was sent (bypass), or not at
			// all (close).
			exchange := func(send, wantPlugin string) {
				t.Helper()
				got := exchangeOrRefused(t, addr, []byte(send))
				want := int64(len(wantPlugin))
				if wantPlugin == "" {
					want = 0
					if failOpen {
						want = int64(len(send))
					}
				}
				if got.N != want {
					t.Fatalf("sent %q: got %d bytes back (err %v), want %d", send, got.N, got.Err, want)
				}
			}
			fail := func() { exchange("!x", "") }

			fail()
			clock.advance(9 * time.Second)
			fail() // the second failure within 10 s
			waitLine(t, logs, fmt.Sprintf(`level=ERROR msg="plugin tripped" plugin=crash policy=%s failures=2 window=10s backoff=1s trips=1`, policy), "plugin tripped")
			if s := plugstats.BreakerOf(p); s != (plugstats.Breaker{Trips: 1, Tripped: true, Probation: true}) {
				t.Errorf("after the trip: %+v", s)
			}
			// The two failed connections were dialled before their chunk
			// crashed the guest; the server may accept them later than
			// the tunnel connected (its Accept runs on a goroutine).
			srv.WaitAccepted(t, 2)
			accepted := srv.Accepted()
			exchange("a", "") // tripped: no instance, no plugin
			if n := plugstats.Instances(p); n != 0 {
				t.Errorf("%d instances while tripped, want 0", n)
			}
			if failOpen && srv.Accepted() != accepted+1 || !failOpen && srv.Accepted() != accepted {
				t.Errorf("the target accepted %d connections while tripped (%d before)", srv.Accepted(), accepted)
			}
			if !failOpen {
				plogs.Wait(t, "connection closed", `plugin \"crash\" is tripped (2 failures within 10s): refusing new connections for 1s more`)
			}

			clock.advance(time.Second) // the backoff is over: on probation
			fail()
			waitLine(t, logs, fmt.Sprintf(`level=ERROR msg="plugin tripped" plugin=crash policy=%s failures=2 window=10s backoff=2s trips=2`, policy), "plugin tripped", "trips=2")
			clock.advance(1999 * time.Millisecond)
			exchange("b", "") // still tripped
			clock.advance(time.Millisecond)
			exchange("c", "+c") // the success ends the probation
			waitLine(t, logs, fmt.Sprintf(`level=INFO msg="plugin recovered" plugin=crash trips=2 %s=2`, what), "plugin recovered")
			if s := plugstats.BreakerOf(p); s != (plugstats.Breaker{Trips: 2, Refused: 2}) {
				t.Errorf("after the recovery: %+v", s)
			}

			// A failure now is one in the window again, not a trip.
			fail()
			exchange("d", "+d")
			clock.advance(10 * time.Second)
			fail() // the first one is out of the window
			exchange("e", "+e")
			if n := logs.Count("plugin tripped"); n != 2 {
				t.Errorf("%d trips logged, want 2", n)
			}
			if n := logs.Count("plugin recovered"); n != 1 {
				t.Errorf("%d recoveries logged, want 1", n)
			}
		})
	}
}

// The backoff doubles up to TripMaxBackoff.
func TestWasmCrashLoopBackoffCapped(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "trap_open", plugin.Options{TripFailures: 1, TripMaxBackoff: 5 * time.Second})
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	plugstats.SetClock(p, clock.now)
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "trap_open", Hook: p})
	want := []string{"1s", "2s", "4s", "5s", "5s"}
	for i, b := range want {
		exchangeOrRefused(t, addr, []byte("x"))
		waitLine(t, logs, fmt.Sprintf(`level=ERROR msg="plugin tripped" plugin=trap_open policy=close failures=1 window=10s backoff=%s trips=%d`, b, i+1), "plugin tripped", fmt.Sprintf("trips=%d", i+1))
		d, _ := time.ParseDuration(b)
		clock.advance(d)
	}
	if s := plugstats.BreakerOf(p); s.Trips != 5 || s.Refused != 0 {
		t.Errorf("breaker %+v", s)
	}
}

// With the defaults and the real clock, a guest that spins on every call
// trips after five call timeouts: the sixth connection is refused at once,
// without waiting for the guest.
func TestWasmSpinningGuestTrips(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "loop", plugin.Options{CallTimeout: 20 * time.Millisecond})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "loop", Hook: p})
	for range plugin.DefaultTripFailures {
		if got := exchangeOrRefused(t, addr, []byte("x")); got.N != 0 {
			t.Fatalf("got %d bytes through a spinning plugin", got.N)
		}
	}
	logs.Wait(t, "plugin tripped", "failures=5 window=10s backoff=1s trips=1")
	start := time.Now()
	if got := exchangeOrRefused(t, addr, []byte("x")); got.N != 0 {
		t.Fatalf("got %d bytes through a tripped plugin", got.N)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a connection to a tripped plugin took %v", d)
	}
	if s := plugstats.BreakerOf(p); s.Trips != 1 || s.Refused < 1 {
		t.Errorf("breaker %+v", s)
	}
	if n := logs.Count("spinning"); n != plugin.DefaultTripFailures {
		t.Errorf("the guest ran %d times, want %d", n, plugin.DefaultTripFailures)
	}
}

// A guest that logs without end in one call gets LogBurst lines through,
// then the limiter's report of how many it dropped.
func TestWasmLogRateLimited(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "logflood", plugin.Options{LogRate: 10, LogBurst: 20})
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	plugstats.SetClock(p, clock.now)
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "logflood", Hook: p, Directions: host.OnlyClientToServer})
	c := tn.Dial(t, addr)
	wasmRoundTrip(t, c, "x", "x") // 10,000 lines logged by one call
	waitLine(t, logs, `level=WARN msg="plugin logflood: 9980 log lines suppressed" plugin=logflood suppressed=9980 log_rate=10 log_burst=20`, "log lines suppressed")
	if n := logs.Count("msg=flooding"); n != 20 {
		t.Errorf("%d lines logged, want the burst of 20", n)
	}
	// Half a second later the bucket holds 5 tokens: the next call gets 5
	// lines through.
	clock.advance(500 * time.Millisecond)
	wasmRoundTrip(t, c, "y", "y")
	logs.Wait(t, "plugin logflood: 9995 log lines suppressed")
	if n := logs.Count("msg=flooding"); n != 25 {
		t.Errorf("%d lines logged, want 25", n)
	}
	if n := logs.Count("log lines suppressed"); n != 2 {
		t.Errorf("%d reports, want 2:\n%s", n, logs)
	}
	if strings.Count(logs.String(), "\n") != 25+2 {
		t.Errorf("log:\n%s", logs)
	}
}
