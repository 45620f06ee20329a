package host_test

// The powers a filter has beyond reacting to bytes: a timer (send, flush,
// close later) and choosing the target from the client's first bytes
// (late dial), each with its bounds.

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// lineHook's filters hold client -> server bytes until a newline arrives
// or a timer fires, whichever is first: "hold until a line or 50 ms".
type lineHook struct {
	wait  time.Duration
	fired atomic.Int32 // Timer calls that flushed something
}

func (h *lineHook) Open(*host.ConnInfo) (host.Filter, error) { return &lineFilter{h: h}, nil }

type lineFilter struct {
	host.PassThrough
	h    *lineHook
	held []byte
}

func (f *lineFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir != host.ClientToServer {
		return s.Send(dir, b)
	}
	f.held = append(f.held, b...)
	if i := bytes.LastIndexByte(f.held, '\n'); i >= 0 {
		if err := s.Send(dir, f.held[:i+1]); err != nil {
			return err
		}
		f.held = append(f.held[:0], f.held[i+1:]...)
	}
	if len(f.held) > 0 {
		return s.SetTimer(f.h.wait)
	}
	s.StopTimer()
	return nil
}

func (f *lineFilter) Timer(s *host.Stream) error {
	if len(f.held) == 0 {
		return nil
	}
	f.h.fired.Add(1)
	err := s.Send(host.ClientToServer, f.held)
	f.held = f.held[:0]
	return err
}

func (f *lineFilter) End(dir host.Direction, s *host.Stream) error {
	if dir == host.ClientToServer && len(f.held) > 0 {
		err := s.Send(dir, f.held)
		f.held = nil
		return err
	}
	return nil
}

// TestTimerFlushesHeldBytes: a partial line goes on when the timer fires, a
// full line at once, on a route where the other direction is filtered or
// spliced.
func TestTimerFlushesHeldBytes(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		for _, dirs := range []host.Directions{host.Both, host.OnlyClientToServer} {
			t.Run(dirs.String(), func(t *testing.T) {
				srv := tn.Serve(t, tn.Echo)
				h := &lineHook{wait: 50 * time.Millisecond}
				addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "line", Hook: h, Directions: dirs}))
				c := tn.Dial(t, addr)
				if _, err := c.Write([]byte("partial")); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len("partial"))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != "partial" {
					t.Fatalf("read %q, %v; want the held bytes once the timer fired", got, err)
				}
				if h.fired.Load() != 1 {
					t.Fatalf("the echo came back with the timer fired %d times: the bytes were not held", h.fired.Load())
				}
				// A whole line goes at once; a later stale timer flushes nothing.
				if _, err := c.Write([]byte("line\n")); err != nil {
					t.Fatal(err)
				}
				got = make([]byte, len("line\n"))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != "line\n" {
					t.Fatalf("read %q, %v", got, err)
				}
				if n := h.fired.Load(); n != 1 {
					t.Fatalf("timer flushed %d times, want 1", n)
				}
			})
		}
	})
}

// byeHook's filters greet, then close the connection from a timer.
type byeHook struct{ closedAfterTimer atomic.Bool }

func (h *byeHook) Open(*host.ConnInfo) (host.Filter, error) { return &byeFilter{h: h}, nil }

type byeFilter struct {
	host.PassThrough
	h     *byeHook
	fired bool
}

func (f *byeFilter) Opened(s *host.Stream) error {
	if err := s.Send(host.ServerToClient, []byte("closing in 20ms\n")); err != nil {
		return err
	}
	return s.SetTimer(20 * time.Millisecond)
}

func (f *byeFilter) Timer(s *host.Stream) error {
	f.fired = true
	if err := s.Send(host.ServerToClient, []byte("bye\n")); err != nil {
		return err
	}
	s.Close()
	return nil
}

func (f *byeFilter) Closed() { f.h.closedAfterTimer.Store(f.fired) }

// TestTimerSendsAndCloses: a timer callback can answer the client and close
// the connection gracefully (the bytes arrive, then EOF).
func TestTimerSendsAndCloses(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		h := &byeHook{}
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "bye", Hook: h}))
		c := tn.Dial(t, addr)
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "closing in 20ms\nbye\n" {
			t.Fatalf("read %q, %v; want both lines then EOF", got, err)
		}
		c.Close() // or the tunnel lingers, reading, for lingerTime
		logs.Wait(t, "connection closed")
		if !h.closedAfterTimer.Load() {
			t.Fatal("Closed ran before the timer fired")
		}
	})
}

// farHook's filters arm their timer at the end of time (the largest
// duration, as a plugin's set_timer may ask) and count its firings.
type farHook struct{ fired atomic.Int32 }

func (h *farHook) Open(*host.ConnInfo) (host.Filter, error) { return &farFilter{h: h}, nil }

type farFilter struct {
	host.PassThrough
	h *farHook
}

func (f *farFilter) Opened(s *host.Stream) error { return s.SetTimer(math.MaxInt64) }
func (f *farFilter) Timer(*host.Stream) error {
	f.h.fired.Add(1)
	return nil
}

// TestTimerAtTheEndOfTime: a timer armed for the largest duration does not
// fire (it once wrapped around to a time in the past, and fired at once)
// while a 20 ms timer beside it does its job.
func TestTimerAtTheEndOfTime(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		far, bye := &farHook{}, &byeHook{}
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "far", Hook: far}, host.Link{Name: "bye", Hook: bye}))
		c := tn.Dial(t, addr)
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "closing in 20ms\nbye\n" {
			t.Fatalf("read %q, %v; want both lines then EOF", got, err)
		}
		c.Close()
		logs.Wait(t, "connection closed")
		if n := far.fired.Load(); n != 0 {
			t.Fatalf("the timer at the end of time fired %d times", n)
		}
	})
}

// sloppyHook arms a timer without implementing TimerFilter.
type sloppyHook struct{}

func (sloppyHook) Open(*host.ConnInfo) (host.Filter, error) { return sloppyFilter{}, nil }

type sloppyFilter struct{ host.PassThrough }

func (sloppyFilter) Opened(s *host.Stream) error { return s.SetTimer(time.Millisecond) }

func TestSetTimerNeedsTimerFilter(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "sloppy", Hook: sloppyHook{}}))
		expectRefused(t, addr)
		logs.Wait(t, "connection closed", "sloppy", host.ErrNoTimer.Error())
	})
}

// lateTimerHook arms a timer that would fire after the connection is gone.
type lateTimerHook struct{ after atomic.Int32 }

func (h *lateTimerHook) Open(*host.ConnInfo) (host.Filter, error) {
	return &lateTimerFilter{h: h}, nil
}

type lateTimerFilter struct {
	host.PassThrough
	h      *lateTimerHook
	closed bool
}

func (f *lateTimerFilter) Opened(s *host.Stream) error { return s.SetTimer(100 * time.Millisecond) }
func (f *lateTimerFilter) Timer(*host.Stream) error {
	if f.closed {
		f.h.after.Add(1)
	}
	return nil
}
func (f *lateTimerFilter) Closed() { f.closed = true }

// TestTimerStopsAtClose: a timer still pending when the connection ends
// never calls the filter after Closed.
func TestTimerStopsAtClose(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		h := &lateTimerHook{}
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "late", Hook: h}))
		c := tn.Dial(t, addr)
		c.Close()
		logs.Wait(t, "connection closed")
		// Wait out the timer: the only way to see that a callback does not come.
		time.Sleep(200 * time.Millisecond)
		if n := h.after.Load(); n != 0 {
			t.Fatalf("Timer ran %d times after Closed", n)
		}
	})
}

// routerHook's filters read "GO <addr>\n" from the client, then dial addr
// (late dial) and pass the rest on. With fromTimer, Opened arms a timer
// that chooses routerHook.def instead, before any byte.
type routerHook struct {
	def       string
	fromTimer bool
}

func (h *routerHook) Open(*host.ConnInfo) (host.Filter, error) { return &routerFilter{h: h}, nil }

type routerFilter struct {
	host.PassThrough
	h      *routerHook
	head   []byte
	routed bool
}

func (f *routerFilter) Opened(s *host.Stream) error {
	if f.h.fromTimer {
		return s.SetTimer(10 * time.Millisecond)
	}
	return nil
}

func (f *routerFilter) Timer(s *host.Stream) error {
	f.routed = true
	return s.SetTarget(f.h.def)
}

func (f *routerFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir != host.ClientToServer || f.routed {
		return s.Send(dir, b)
	}
	f.head = append(f.head, b...)
	i := bytes.IndexByte(f.head, '\n')
	if i < 0 {
		return nil
	}
	target, ok := strings.CutPrefix(string(f.head[:i]), "GO ")
	if !ok {
		return fmt.Errorf("bad routing line %q", f.head[:i])
	}
	if err := s.SetTarget(target); err != nil {
		return err
	}
	f.routed = true
	return s.Send(dir, f.head[i+1:])
}

// namedEcho is an echo server that first says its name.
func namedEcho(t *testing.T, name string) *tn.Server {
	return tn.Serve(t, func(c *net.TCPConn) {
		c.Write([]byte(name))
		io.Copy(c, c)
	})
}

func lateRoute(chain ...host.Link) host.Route {
	r := tn.Route("late", "", chain...)
	r.LateDial = true
	return r
}

// TestLateDialRoutesByFirstBytes: the chain chooses the target from the
// client's first line; the bytes after it reach the chosen server, with the
// other direction filtered or spliced.
func TestLateDialRoutesByFirstBytes(t *testing.T) {
	t.Parallel()
	for _, dirs := range []host.Directions{host.Both, host.OnlyClientToServer} {
		t.Run(dirs.String(), func(t *testing.T) {
			a, b := namedEcho(t, "A:"), namedEcho(t, "B:")
			h := &routerHook{}
			addr, logs := tunnel(t, lateRoute(host.Link{Name: "router", Hook: h, Directions: dirs}))
			for _, tc := range []struct {
				srv  *tn.Server
				name string
			}{{b, "B:"}, {a, "A:"}} {
				c := tn.Dial(t, addr)
				// The routing line arrives in two pieces, with the payload.
				if _, err := c.Write([]byte("GO " + tc.srv.Addr()[:5])); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write([]byte(tc.srv.Addr()[5:] + "\nhello")); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(tc.name+"hello"))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != tc.name+"hello" {
					t.Fatalf("read %q, %v; want %q", got, err, tc.name+"hello")
				}
				c.Close()
				logs.Wait(t, "connection closed", "target="+tc.srv.Addr())
			}
		})
	}
}

// TestLateDialFromTimer: a timer chooses the target while the client sends
// nothing; the server that speaks first is heard.
func TestLateDialFromTimer(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.SpeakFirst)
	addr, _ := tunnel(t, lateRoute(host.Link{Name: "router", Hook: &routerHook{def: srv.Addr(), fromTimer: true}}))
	c := tn.Dial(t, addr)
	got := make([]byte, len(tn.Welcome))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != tn.Welcome {
		t.Fatalf("read %q, %v; want the welcome of the server a timer chose", got, err)
	}
}

// TestLateDialBounds: the bytes held for a target not chosen yet, and the
// time waited for it, are bounded; past either the client is closed and
// the log says why. So is a client that ends before any choice.
func TestLateDialBounds(t *testing.T) {
	t.Parallel()
	never := &routerHook{} // waits for a line that never comes
	t.Run("wait", func(t *testing.T) {
		r := lateRoute(host.Link{Name: "router", Hook: never})
		r.TargetWait = 200 * time.Millisecond
		addr, logs := tunnel(t, r)
		start := time.Now()
		expectRefused(t, addr)
		if d := time.Since(start); d > r.TargetWait+teardownBound {
			t.Errorf("closed after %s, want about %s", d, r.TargetWait)
		}
		logs.Wait(t, "connection closed", "no filter chose a target within 200ms")
	})
	t.Run("client ends first", func(t *testing.T) {
		addr, logs := tunnel(t, lateRoute(host.Link{Name: "router", Hook: never}))
		c := tn.Dial(t, addr)
		c.Write([]byte("GO nowhere"))
		c.CloseWrite()
		expectClosed(t, c)
		logs.Wait(t, "connection closed", "ended its stream before a filter chose a target")
	})
	t.Run("fixed route", func(t *testing.T) {
		srv := tn.Serve(t, tn.Echo)
		addr, logs := tunnel(t, tn.Route("fixed", srv.Addr(), host.Link{Name: "router", Hook: &routerHook{}}))
		c := tn.Dial(t, addr)
		c.Write([]byte("GO " + srv.Addr() + "\n"))
		expectClosed(t, c)
		logs.Wait(t, "connection closed", host.ErrNotLateDial.Error())
	})
}

// expectClosedAfterBytes reads c until the tunnel closes it, whatever it
// sent first.
func expectClosedAfterBytes(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.Copy(io.Discard, c); err != nil && !tn.IsClosed(err) {
		t.Fatalf("read: %v; want the connection closed", err)
	}
}

// TestLateDialHoldLimitCountsForwarded: bytes a filter passes on toward a
// target not dialled yet count against the hold limit.
func TestLateDialHoldLimitCountsForwarded(t *testing.T) {
	t.Parallel()
	chooser := host.ChunkFunc(func(info *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
		return b, nil // forwards, never chooses
	})
	r := lateRoute(host.Link{Name: "pass", Hook: chooser})
	r.HoldLimit = 16 << 10
	addr, logs := tunnel(t, r)
	c := tn.Dial(t, addr)
	go c.Write(bytes.Repeat([]byte("y"), 64<<10))
	expectClosedAfterBytes(t, c)
	logs.Wait(t, "connection closed", "late dial: ", "over the limit of 16384")
}

// amplifier doubles what the client sends and acknowledges each chunk.
var amplifier = host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
	if dir == host.ServerToClient {
		return b, nil
	}
	return append(append([]byte(nil), b...), b...), nil
})

// TestCountersShowWhatFiltersDid: the close log counts the bytes read from
// and written to each peer, so a rewrite is visible to an operator.
func TestCountersShowWhatFiltersDid(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "x2", Hook: amplifier}))
		c := tn.Dial(t, addr)
		got := tn.Exchange(c, []byte("abc"))
		if got.Err != nil || got.N != 6 {
			t.Fatalf("client got %d bytes, %v; want the 6 the amplifier sent", got.N, got.Err)
		}
		logs.Wait(t, "connection closed", "bytes_from_client=3 bytes_to_server=6 bytes_from_server=6 bytes_to_client=6")
	})
}

// taggers: the first link tags what the client's first chunk starts with,
// the second reads that tag and tags its own verdict.
type firstWordTagger struct{}

func (firstWordTagger) Open(*host.ConnInfo) (host.Filter, error) { return &firstWordFilter{}, nil }

type firstWordFilter struct {
	host.PassThrough
	done bool
}

func (f *firstWordFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ClientToServer && !f.done {
		f.done = true
		word, _, _ := strings.Cut(string(b), " ")
		if err := s.SetTag("proto.command", word); err != nil {
			return err
		}
	}
	return s.Send(dir, b)
}

type verdictTagger struct{ seen chan string }

func (v verdictTagger) Open(*host.ConnInfo) (host.Filter, error) { return &verdictFilter{v: v}, nil }

type verdictFilter struct {
	host.PassThrough
	v verdictTagger
}

func (f *verdictFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if cmd, ok := s.Tag("proto.command"); ok && dir == host.ClientToServer {
		f.v.seen <- cmd
		if err := s.SetTag("verdict", "allowed"); err != nil {
			return err
		}
	}
	return s.Send(dir, b)
}

// TestTags: a later link reads a tag an earlier one set, the close log
// line shows them all, and bad tags are refused with a clear error.
func TestTags(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		seen := make(chan string, 1)
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(),
			host.Link{Name: "first", Hook: firstWordTagger{}},
			host.Link{Name: "verdict", Hook: verdictTagger{seen: seen}}))
		c := tn.Dial(t, addr)
		if got := tn.Exchange(c, []byte("GET key")); got.Err != nil || got.N != 7 {
			t.Fatalf("echo: %+v", got)
		}
		if cmd := <-seen; cmd != "GET" {
			t.Errorf("the second link read proto.command=%q, want GET", cmd)
		}
		logs.Wait(t, "connection closed", "tag.proto.command=GET tag.verdict=allowed")

		for _, tc := range []struct{ key, value, want string }{
			{"has space", "v", `tag key "has space": want 1 to 64 letters, digits, '.', '_' or '-'`},
			{"k", strings.Repeat("v", 257), `tag "k": value of 257 bytes is over the limit of 256`},
		} {
			errc := make(chan error, 1)
			h := tagHook{key: tc.key, value: tc.value, errc: errc}
			addr, _ := eng.tunnel(t, tn.Route("bad", srv.Addr(), host.Link{Name: "bad", Hook: h}))
			tn.Dial(t, addr)
			if err := <-errc; err == nil || err.Error() != tc.want {
				t.Errorf("SetTag(%q, %d bytes): %v, want %q", tc.key, len(tc.value), err, tc.want)
			}
		}
	})
}

// tagHook's filters set one tag when the connection opens and report the error.
type tagHook struct {
	key, value string
	errc       chan error
}

func (h tagHook) Open(*host.ConnInfo) (host.Filter, error) { return tagFilter{h}, nil }

type tagFilter struct{ h tagHook }

func (f tagFilter) Opened(s *host.Stream) error                           { f.h.errc <- s.SetTag(f.h.key, f.h.value); return nil }
func (tagFilter) Data(dir host.Direction, b []byte, s *host.Stream) error { return s.Send(dir, b) }
func (tagFilter) End(host.Direction, *host.Stream) error                  { return nil }
func (tagFilter) Closed()                                                 {}

// lagHook delays the client's bytes by a timer and keeps the client's
// half-close behind them (Stream.DeferEnd), as a latency fault would.
type lagHook struct{}

func (lagHook) Open(*host.ConnInfo) (host.Filter, error) { return &lagFilter{}, nil }

type lagFilter struct {
	host.PassThrough
	held  []byte
	ended bool
}

func (f *lagFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir != host.ClientToServer {
		return s.Send(dir, b)
	}
	f.held = append(f.held, b...)
	return s.SetTimer(30 * time.Millisecond)
}

func (f *lagFilter) End(dir host.Direction, s *host.Stream) error {
	if dir != host.ClientToServer {
		return nil
	}
	f.ended = true
	if err := s.DeferEnd(dir); err != nil { // the FIN goes after the delayed bytes
		return err
	}
	// Re-armed: the timer may have fired (and sent what it held) before
	// the end came, a loaded machine having delayed the FIN's read by
	// 30 ms; nothing else would then send the FIN.
	return s.SetTimer(30 * time.Millisecond)
}

func (f *lagFilter) Timer(s *host.Stream) error {
	if err := s.Send(host.ClientToServer, f.held); err != nil {
		return err
	}
	f.held = f.held[:0]
	if f.ended {
		return s.CloseWrite(host.ClientToServer)
	}
	return nil
}

// TestDeferEnd: bytes a timer sends after the client half-closed still
// reach the server, before the half-close; the server's answer comes back.
func TestDeferEnd(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) {
			got := tn.ReadSum(c) // to EOF: the half-close must come after the bytes
			serverGot <- got
			c.Write([]byte("done"))
			c.CloseWrite()
		})
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "lag", Hook: lagHook{}}))
		c := tn.Dial(t, addr)
		payload := tn.Random(7, 100<<10)
		got := tn.Exchange(c, payload)
		if got.Err != nil || got.N != 4 {
			t.Fatalf("client got %d bytes, %v; want the server's 4-byte answer", got.N, got.Err)
		}
		if s := tn.Wait(t, serverGot, "what the server received"); s.N != int64(len(payload)) || s.Sum != tn.Sum(payload) {
			t.Fatalf("server got %d bytes (%v), want all %d before the half-close", s.N, s.Err, len(payload))
		}
		logs.Wait(t, "connection closed", "bytes_from_client=102400 bytes_to_server=102400")
	})
}

// TestDeferEndOnlyFromEnd: DeferEnd outside End is refused.
func TestDeferEndOnlyFromEnd(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		errc := make(chan error, 1)
		addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "early", Hook: earlyDefer{errc}}))
		tn.Dial(t, addr)
		if err := <-errc; err == nil || err.Error() != "defer end: only from the End callback of that direction" {
			t.Fatalf("DeferEnd in Opened: %v", err)
		}
	})
}

type earlyDefer struct{ errc chan error }

func (e earlyDefer) Open(*host.ConnInfo) (host.Filter, error) { return earlyDeferFilter{e}, nil }

type earlyDeferFilter struct{ e earlyDefer }

func (f earlyDeferFilter) Opened(s *host.Stream) error {
	f.e.errc <- s.DeferEnd(host.ClientToServer)
	return nil
}
func (earlyDeferFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	return s.Send(dir, b)
}
func (earlyDeferFilter) End(host.Direction, *host.Stream) error { return nil }
func (earlyDeferFilter) Closed()                                {}

// deferForever defers the client's half-close and never completes it (a
// fault-injection filter's "timeout": the stream never ends).
// ended, if set, is told once the half-close is deferred.
type deferForever struct {
	host.PassThrough
	ended chan<- struct{}
}

func (d deferForever) Open(*host.ConnInfo) (host.Filter, error) { return d, nil }

func (d deferForever) End(dir host.Direction, s *host.Stream) error {
	if dir == host.ClientToServer {
		err := s.DeferEnd(dir)
		if d.ended != nil {
			d.ended <- struct{}{}
		}
		return err
	}
	return nil
}

// TestDeferredEndThenReset: a client that half-closes while a filter holds
// its half-close, then resets, ends the connection: nobody reads the client
// any more, yet the reset is seen (and the server, silent, is closed too).
func TestDeferredEndThenReset(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		serverGone := make(chan error, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) {
			_, err := io.Copy(io.Discard, c) // until the tunnel closes it
			serverGone <- err
		})
		ended := make(chan struct{}, 1)
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "forever", Hook: deferForever{ended: ended}}))
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		select {
		case <-ended:
		case <-time.After(tn.Timeout):
			t.Fatal("the filter never saw the client's half-close")
		}
		// The half-close is held: the tunnel keeps the connection up.
		if line := logs.String(); strings.Contains(line, "connection closed") {
			t.Fatalf("closed before the reset:\n%s", line)
		}
		c.SetLinger(0)
		c.Close() // a reset
		logs.Wait(t, "connection closed", "reason=reset")
		select {
		case <-serverGone:
		case <-time.After(tn.Timeout):
			t.Fatal("the server's side stayed open after the client reset")
		}
	})
}
