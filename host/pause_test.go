package host_test

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// pauseHook's filters pause the client's reads after its first chunk
// (Stream.PauseRead) and resume them from their timer once the test sets
// resume. They count what they see while paused, which must be nothing.
type pauseHook struct {
	paused chan struct{} // closed at the pause (one connection per hook)
	ticked chan struct{} // closed at the 25th timer call while paused
	resume atomic.Bool
	// outside: the test resumes the reads itself (Stream.ResumeRead
	// from its goroutine); the timer stops after its 25th call. Else the
	// timer keeps going until resume is set.
	outside bool
	stream  *host.Stream // the paused connection's, set before paused is closed
	during  atomic.Int64 // client bytes seen while paused
	ended   atomic.Int32 // 1: End came while paused, 2: after
}

func newPauseHook() *pauseHook {
	return &pauseHook{paused: make(chan struct{}), ticked: make(chan struct{})}
}

func (h *pauseHook) Open(*host.ConnInfo) (host.Filter, error) { return &pauseFilter{h: h}, nil }

type pauseFilter struct {
	host.PassThrough
	h            *pauseHook
	seen, paused bool
	ticks        int
}

func (f *pauseFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ClientToServer && f.paused {
		f.h.during.Add(int64(len(b)))
	}
	if err := s.Forward(dir, b); err != nil || dir != host.ClientToServer || f.seen {
		return err
	}
	f.seen, f.paused = true, true
	if err := s.PauseRead(host.ClientToServer); err != nil {
		return err
	}
	f.h.stream = s
	close(f.h.paused)
	return s.SetTimer(2 * time.Millisecond)
}

func (f *pauseFilter) Timer(s *host.Stream) error {
	if f.h.resume.Load() {
		f.paused = false
		return s.ResumeRead(host.ClientToServer)
	}
	if f.ticks >= 25 && f.h.outside {
		return nil // the test resumes the reads itself
	}
	if f.ticks++; f.ticks == 25 {
		close(f.h.ticked)
	}
	return s.SetTimer(2 * time.Millisecond)
}

func (f *pauseFilter) End(dir host.Direction, s *host.Stream) error {
	if dir == host.ClientToServer {
		f.h.ended.Store(map[bool]int32{true: 1, false: 2}[f.paused])
	}
	return nil
}

// pausedConn opens a connection through a tunnel whose filter pauses the
// client's reads after "first", and starts writing 8 MiB after it, then
// half-closing: more than the sockets hold, so the writer waits for the
// tunnel to read. It returns the writer's error channel.
func pausedConn(t *testing.T, c io.ReadWriter, h *pauseHook, payload []byte) <-chan error {
	t.Helper()
	tn.EchoOnce(t, c, "first")
	tn.Wait(t, h.paused, "the pause")
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	return werr
}

// TestPauseReadStopsTheSender: while a filter pauses the client's reads,
// nothing more is read from it (not its bytes, not its FIN) however long
// the pause; once resumed, every byte arrives, then the end of stream. On
// the event loop the client's bytes are already in the socket when the
// reads resume: no new readiness event comes, and they must still be read.
// The reads are resumed by the filter's timer, or from another goroutine
// (which ResumeRead allows, as Abort does).
func TestPauseReadStopsTheSender(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		for _, outside := range []bool{false, true} {
			t.Run(map[bool]string{false: "by the timer", true: "from outside"}[outside], func(t *testing.T) {
				testPauseRead(t, eng, outside)
			})
		}
	})
}

func testPauseRead(t *testing.T, eng engine, outside bool) {
	srv := tn.Serve(t, tn.Echo)
	h := newPauseHook()
	h.outside = outside
	addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "pause", Hook: h}))
	c := tn.Dial(t, addr)
	payload := tn.Random(7, 8<<20)
	werr := pausedConn(t, c, h, payload)
	got := make(chan tn.Received, 1)
	go func() { got <- tn.ReadSum(c) }()
	tn.Wait(t, h.ticked, "25 timer calls while paused")
	if n := h.during.Load(); n != 0 {
		t.Fatalf("the filter saw %d client bytes while the reads were paused", n)
	}
	if h.ended.Load() != 0 {
		t.Fatal("the filter saw the client's end of stream while the reads were paused")
	}
	if outside {
		if err := h.stream.ResumeRead(host.ClientToServer); err != nil {
			t.Fatal(err)
		}
	} else {
		h.resume.Store(true)
	}
	if err := tn.Wait(t, werr, "the client's write"); err != nil {
		t.Fatalf("client write: %v", err)
	}
	r := tn.Wait(t, got, "the echo")
	if r.Err != nil || r.N != int64(len(payload)) || r.Sum != tn.Sum(payload) {
		t.Fatalf("echo after the resume: %d bytes (sha256 %.12s), %v; want %d bytes (%.12s)", r.N, r.Sum, r.Err, len(payload), tn.Sum(payload))
	}
	if !outside {
		if e := h.ended.Load(); e != 2 {
			t.Fatalf("End of the client's stream: %d, want 2 (after the resume)", e)
		}
	}
}

// TestPauseReadTeardown: a connection whose reads are paused, with a client
// blocked writing to it, ends at once when the Proxy closes, and when the
// client resets it (nobody reads the paused socket: the engine must watch
// it).
func TestPauseReadTeardown(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		payload := tn.Random(8, 8<<20)
		t.Run("proxy close", func(t *testing.T) {
			srv := tn.Serve(t, tn.Echo)
			h := newPauseHook()
			addr, p, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "pause", Hook: h})
			c := tn.Dial(t, addr)
			werr := pausedConn(t, c, h, payload)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			p.Shutdown(ctx) // the deadline passes: the paused connection is aborted
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Shutdown with a 100ms deadline returned after %v", d)
			}
			if err := tn.Wait(t, werr, "the client's write"); err == nil {
				t.Fatal("the client's write of 8 MiB succeeded: the tunnel read it while paused")
			}
			logs.Wait(t, "connection closed")
		})
		t.Run("client reset", func(t *testing.T) {
			srv := tn.Serve(t, tn.Echo)
			h := newPauseHook()
			addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "pause", Hook: h}))
			c := tn.Dial(t, addr)
			tn.EchoOnce(t, c, "first")
			tn.Wait(t, h.paused, "the pause")
			c.SetLinger(0)
			c.Close()
			logs.Wait(t, "connection closed", "reason=reset")
		})
	})
}

// TestPauseReadNeedsFilters: a direction the kernel forwards cannot be
// paused, and the error says why.
func TestPauseReadNeedsFilters(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	hook := pauseSplicedHook{errs: make(chan error, 1)}
	addr, _ := tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "p", Hook: hook, Directions: host.OnlyClientToServer}))
	c := tn.Dial(t, addr)
	tn.EchoOnce(t, c, "x")
	err := tn.Wait(t, hook.errs, "Opened")
	if err == nil || err.Error() != "pause read: "+host.ErrNotAttached.Error() {
		t.Fatalf("PauseRead of a spliced direction: %v, want ErrNotAttached", err)
	}
}

// pauseSplicedHook's filters try to pause the direction they do not see.
type pauseSplicedHook struct{ errs chan error }

func (h pauseSplicedHook) Open(*host.ConnInfo) (host.Filter, error) {
	return pauseSplicedFilter(h), nil
}

type pauseSplicedFilter struct{ errs chan error }

func (f pauseSplicedFilter) Opened(s *host.Stream) error {
	f.errs <- s.PauseRead(host.ServerToClient)
	return nil
}
func (pauseSplicedFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	return s.Forward(dir, b)
}
func (pauseSplicedFilter) End(host.Direction, *host.Stream) error { return nil }
func (pauseSplicedFilter) Closed()                                {}

// lateHoldHook's filters pause the client's reads when the connection
// opens, choose the target from their timer, and resume the reads when the
// server's first bytes come (a server-speaks-first protocol whose client
// must wait for the greeting).
type lateHoldHook struct{ target string }

func (h lateHoldHook) Open(*host.ConnInfo) (host.Filter, error) {
	return &lateHoldFilter{target: h.target}, nil
}

type lateHoldFilter struct {
	host.PassThrough
	target  string
	resumed bool
}

func (f *lateHoldFilter) Opened(s *host.Stream) error {
	if err := s.PauseRead(host.ClientToServer); err != nil {
		return err
	}
	return s.SetTimer(time.Millisecond)
}

func (f *lateHoldFilter) Timer(s *host.Stream) error { return s.SetTarget(f.target) }

func (f *lateHoldFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ServerToClient && !f.resumed {
		f.resumed = true
		if err := s.ResumeRead(host.ClientToServer); err != nil {
			return err
		}
	}
	return s.Forward(dir, b)
}

// TestPauseReadLateDialFromTimer: on a late-dial route, a timer that
// chooses the target while the client's reads are paused gets the target
// dialled at once: the goroutine that waits for the target must not wait
// for the resume instead (which here comes only from the server's bytes).
func TestPauseReadLateDialFromTimer(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.SpeakFirst)
	r := tn.Route("late", "", host.Link{Name: "hold", Hook: lateHoldHook{target: srv.Addr()}})
	r.LateDial = true
	addr, _ := tunnel(t, r)
	c := tn.Dial(t, addr)
	got := make([]byte, len(tn.Welcome))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != tn.Welcome {
		t.Fatalf("read %q, %v; want the welcome of the server the timer chose", got, err)
	}
	tn.EchoOnce(t, c, "after the resume")
}

// latchHook's filters pause the client's reads at its first chunk and hand
// their Stream to the test, which resumes them.
type latchHook struct{ streams chan *host.Stream }

func (h latchHook) Open(*host.ConnInfo) (host.Filter, error) { return &latchFilter{h: h}, nil }

type latchFilter struct {
	host.PassThrough
	h    latchHook
	seen bool
}

func (f *latchFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if err := s.Forward(dir, b); err != nil || dir != host.ClientToServer || f.seen {
		return err
	}
	f.seen = true
	if err := s.PauseRead(host.ClientToServer); err != nil {
		return err
	}
	f.h.streams <- s
	return nil
}

// TestPauseReadIsEachFilters: two links pause the client's reads; the
// first one's resume leaves them paused, the second's resumes them. (With
// one flag for the connection, the first resume ended the second link's
// pause, and a second rate limit would buffer again.)
func TestPauseReadIsEachFilters(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		a, b := latchHook{make(chan *host.Stream, 1)}, latchHook{make(chan *host.Stream, 1)}
		addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "a", Hook: a}, host.Link{Name: "b", Hook: b}))
		c := tn.Dial(t, addr)
		tn.EchoOnce(t, c, "first")
		sa, sb := tn.Wait(t, a.streams, "a's pause"), tn.Wait(t, b.streams, "b's pause")
		if _, err := c.Write([]byte("second")); err != nil {
			t.Fatal(err)
		}
		if err := sa.ResumeRead(host.ClientToServer); err != nil {
			t.Fatal(err)
		}
		if !sa.ReadPaused(host.ClientToServer) {
			t.Fatal("a's resume ended b's pause too")
		}
		if err := sa.ResumeRead(host.ClientToServer); err != nil { // twice: nothing more
			t.Fatal(err)
		}
		if err := sb.ResumeRead(host.ClientToServer); err != nil {
			t.Fatal(err)
		}
		if sb.ReadPaused(host.ClientToServer) {
			t.Fatal("still paused once both links resumed")
		}
		got := make([]byte, len("second"))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "second" {
			t.Fatalf("read %q, %v after both resumes", got, err)
		}
	})
}

// byePauseHook's filters pause the client's reads at its first chunk, then,
// at the server's first reply, pass it on, say goodbye and close the
// connection, still paused.
type byePauseHook struct{ paused chan struct{} }

func (h byePauseHook) Open(*host.ConnInfo) (host.Filter, error) {
	return &byePauseFilter{h: h}, nil
}

type byePauseFilter struct {
	host.PassThrough
	h    byePauseHook
	seen bool
}

func (f *byePauseFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if err := s.Forward(dir, b); err != nil {
		return err
	}
	if dir == host.ServerToClient {
		if err := s.Send(host.ServerToClient, []byte("bye")); err != nil {
			return err
		}
		s.Close()
		return nil
	}
	if f.seen {
		return nil
	}
	f.seen = true
	if err := s.PauseRead(host.ClientToServer); err != nil {
		return err
	}
	close(f.h.paused)
	return nil
}

// TestPauseReadThenClose: a filter that closes the connection while the
// client's reads are paused gets its goodbye to the client, then a clean
// end: the paused source is read and dropped as in any lingering close, not
// waited for.
func TestPauseReadThenClose(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		reply := make(chan struct{})
		srv := tn.Serve(t, func(c *net.TCPConn) {
			buf := make([]byte, len("first"))
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			select {
			case <-reply:
			case <-time.After(2 * tn.Timeout):
				return
			}
			c.Write(buf)
			io.Copy(io.Discard, c)
		})
		h := byePauseHook{paused: make(chan struct{})}
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "bye", Hook: h}))
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		tn.Wait(t, h.paused, "the pause")
		if _, err := c.Write([]byte("unread")); err != nil {
			t.Fatal(err)
		}
		close(reply)
		got, err := io.ReadAll(c)
		if string(got) != "firstbye" || err != nil {
			t.Fatalf("client got %q, %v; want the reply and the goodbye, then the end of stream", got, err)
		}
		c.CloseWrite()
		logs.Wait(t, "connection closed", "reason=filter_close")
	})
}

// TestPauseReadAcrossReload: a reload while a connection's reads are
// paused leaves it on its old chain, still paused; a connection after the
// reload runs the new one; the paused connection resumes and finishes
// whole, and only then is the old route version released.
func TestPauseReadAcrossReload(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		released := make(chan string, 2)
		h := newPauseHook()
		route := func(v string, hook host.Hook) host.Route {
			r := tn.Route("r", srv.Addr(), eng.links([]host.Link{{Name: v, Hook: hook}})...)
			r.OnRelease = func() { released <- v }
			return r
		}
		p, _ := tn.Proxy(t, route("v1", h))
		addr := p.Addr("r").String()
		c := tn.Dial(t, addr)
		payload := tn.Random(9, 4<<20)
		werr := pausedConn(t, c, h, payload)
		got := make(chan tn.Received, 1)
		go func() { got <- tn.ReadSum(c) }()
		if err := p.Apply([]host.Route{route("v2", newPauseHook())}); err != nil {
			t.Fatal(err)
		}
		fresh := tn.Dial(t, addr)
		tn.EchoOnce(t, fresh, "first") // v2 pauses it too: only its first chunk
		fresh.Close()
		tn.Wait(t, h.ticked, "25 timer calls while paused")
		select {
		case v := <-released:
			t.Fatalf("%s released while a connection of v1 is open and paused", v)
		default:
		}
		if n := h.during.Load(); n != 0 {
			t.Fatalf("the filter saw %d client bytes while paused, across the reload", n)
		}
		h.resume.Store(true)
		if err := tn.Wait(t, werr, "the client's write"); err != nil {
			t.Fatalf("client write: %v", err)
		}
		if r := tn.Wait(t, got, "the echo"); r.Err != nil || r.N != int64(len(payload)) || r.Sum != tn.Sum(payload) {
			t.Fatalf("echo after the resume: %d bytes, %v; want %d", r.N, r.Err, len(payload))
		}
		c.Close()
		if v := tn.Wait(t, released, "v1's release"); v != "v1" {
			t.Fatalf("released %q, want v1", v)
		}
	})
}
