//go:build linux

package host_test

// Review of the inline engine (a route of InlineHooks on a loop of its
// own): each test compares it with the goroutine engine on a case the
// engine got wrong.

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestReviewAbortWhileDialling: a connection aborted while its target's
// dial is in progress (the Proxy shuts down, or a filter aborts it from
// another goroutine as a failed plugin instance does) is not a dial
// failure: DialFailures stays 0 and its reason is the abort's, as on the
// goroutine engine. The inline engine counted it as a failed dial.
func TestReviewAbortWhileDialling(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"shutdown", "stream-abort"} {
		t.Run(how, func(t *testing.T) {
			engines(t, func(t *testing.T, eng engine) {
				target := testkit.BlackHole(t)
				opened := make(chan *host.Stream, 1)
				hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
					return &testFilter{opened: func(s *host.Stream) error { opened <- s; return nil }}, nil
				})
				r := tn.Route("r", target, eng.links([]host.Link{{Name: "f", Hook: hook}})...)
				r.DialTimeout = time.Minute
				p, logs := tn.Proxy(t, r)
				c := tn.Dial(t, p.Addr("r").String())
				defer c.Close()
				s := <-opened
				want := "shutdown"
				switch how {
				case "shutdown":
					p.Close()
				default:
					s.Abort(errors.New("instance failed")) // from this goroutine, not a callback
					want = "filter_error"
				}
				logs.Wait(t, "connection closed", "reason="+want)
				st := routeStats(t, p, "r")
				if st.DialFailures != 0 || st.Closed["dial_failed"] != 0 || st.Closed[want] != 1 {
					t.Errorf("DialFailures=%d closed=%v; want no dial failure and one %s", st.DialFailures, st.Closed, want)
				}
			})
		})
	}
}

// TestReviewRefusedIsNotDialFailure: a connection a hook refuses (Open or
// Opened fails) is counted as refused, not as a failed dial: the target
// is never dialled. The inline engine ended it as a failed dial (the loop
// was "dialling" while the chain opened).
func TestReviewRefusedIsNotDialFailure(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{opened: func(*host.Stream) error { return errors.New("not welcome") }}, nil
		})
		srv := tn.Serve(t, tn.Echo)
		addr, p, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "gate", Hook: hook})
		expectRefused(t, addr)
		logs.Wait(t, "connection closed", "reason=refused")
		st := routeStats(t, p, "test")
		if st.DialFailures != 0 || st.Closed["refused"] != 1 || st.Rejected["denied"] != 1 {
			t.Errorf("DialFailures=%d closed=%v rejected=%v; want no dial failure, one refused and denied", st.DialFailures, st.Closed, st.Rejected)
		}
	})
}

// TestReviewOneWayChainCloseReason: with a link on one direction only (the
// other spliced), a client that half-closes first ends the connection as
// client_eof, as on the goroutine engine. The inline engine looked at the
// filtered direction's EOF only, so it named the server.
func TestReviewOneWayChainCloseReason(t *testing.T) {
	t.Parallel()
	for _, dirs := range []host.Directions{host.OnlyClientToServer, host.OnlyServerToClient} {
		t.Run(dirs.String(), func(t *testing.T) {
			engines(t, func(t *testing.T, eng engine) {
				reply := []byte("bye\n")
				got := make(chan tn.Received, 1)
				srv := tn.Serve(t, halfCloseServer(reply, got))
				hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) { return &testFilter{}, nil })
				addr, _, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "one-way", Hook: hook, Directions: dirs})
				c := tn.Dial(t, addr)
				defer c.Close()
				if got := roundTrip(t, c, []byte("hello\n")); string(got) != string(reply) {
					t.Fatalf("client got %q, want %q", got, reply)
				}
				if r := <-got; r.Err != nil || r.N != 6 {
					t.Fatalf("server got %d bytes, %v", r.N, r.Err)
				}
				line := logs.Wait(t, "connection closed")
				if !strings.Contains(line, "reason=client_eof") {
					t.Errorf("close line %q; want reason=client_eof (the client half-closed first)", line)
				}
			})
		})
	}
}

// timerFilter is a testFilter with a timer.
type timerFilter struct {
	testFilter
	timer func(s *host.Stream) error
}

func (f *timerFilter) Timer(s *host.Stream) error { return f.timer(s) }

// TestReviewSendAfterClose: a filter that answers, closes the connection,
// and sends again from its timer while the connection lingers: the late
// bytes are dropped and the close stays an orderly filter_close with no
// error (the goroutine engine's behaviour). The inline engine turned the
// late write into a broken pipe: a reset and an error.
func TestReviewSendAfterClose(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		fired := make(chan struct{})
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			f := &timerFilter{}
			f.data = func(dir host.Direction, _ []byte, s *host.Stream) error {
				if dir != host.ClientToServer {
					return nil
				}
				if err := s.Send(host.ServerToClient, []byte("reply\n")); err != nil {
					return err
				}
				s.Close()
				return s.SetTimer(50 * time.Millisecond)
			}
			f.timer = func(s *host.Stream) error {
				defer close(fired)
				s.Send(host.ServerToClient, []byte("late\n")) // the connection is closing: dropped
				return nil
			}
			return f, nil
		})
		addr, p, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "closer", Hook: hook})
		c := tn.Dial(t, addr)
		defer c.Close()
		if _, err := c.Write([]byte("hi\n")); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "reply\n" {
			t.Fatalf("client got %q, %v; want the reply and a clean EOF", got, err)
		}
		<-fired // the client keeps its side open: the tunnel lingers meanwhile
		line := logs.Wait(t, "connection closed")
		if !strings.Contains(line, "reason=filter_close") || strings.Contains(line, "err=") {
			t.Errorf("close line %q; want reason=filter_close and no error", line)
		}
		if st := routeStats(t, p, "test"); st.Errors != 0 {
			t.Errorf("Errors=%d, want 0", st.Errors)
		}
	})
}

// TestReviewCloseBeforeDialIdle: a filter that answers a long banner and
// closes before the dial, toward a client that never reads it: the route's
// idle timeout still ends the connection. On the inline engine no timer
// was armed (the idle timer starts with a completed dial), so it never
// ended. (The goroutine engine blocks in the banner's write: it hangs too,
// see the report; this test runs on the inline engine.)
func TestReviewCloseBeforeDialIdle(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	big := make([]byte, 32<<20) // more than the sockets' buffers hold
	hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
		return &testFilter{opened: func(s *host.Stream) error {
			if err := s.Send(host.ServerToClient, big); err != nil {
				return err
			}
			s.Close()
			return nil
		}}, nil
	})
	r := tn.Route("r", srv.Addr(), host.Link{Name: "banner", Hook: inlineHook{hook}})
	r.IdleTimeout = 300 * time.Millisecond
	p, logs := tn.Proxy(t, r)
	c := tn.Dial(t, p.Addr("r").String())
	defer c.Close()
	line := logs.Wait(t, "connection closed") // fails after tn.Timeout
	if !strings.Contains(line, "idle for") {
		t.Errorf("close line %q; want the idle timeout's error", line)
	}
	if st := routeStats(t, p, "r"); st.IdleTimeouts != 1 {
		t.Errorf("IdleTimeouts=%d, want 1", st.IdleTimeouts)
	}
	if n := srv.Accepted(); n != 0 {
		t.Errorf("the target got %d connections, want none", n)
	}
}

// TestReviewCloseWhileDialling: a filter that closes the connection from
// its timer while the target's dial is still in progress: what it sent
// toward the target before the dial is dropped (Stream.Close), and the
// filters see no more callbacks. The inline engine, once the dial
// completed, ran Connected and wrote the held bytes to the target.
func TestReviewCloseWhileDialling(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		lfd, target := testkit.BlackHoleListener(t)
		closed := make(chan struct{})
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			f := &timerFilter{}
			f.opened = func(s *host.Stream) error {
				if err := s.Send(host.ClientToServer, []byte("HELLO")); err != nil {
					return err
				}
				return s.SetTimer(10 * time.Millisecond)
			}
			f.timer = func(s *host.Stream) error {
				s.Close()
				close(closed)
				return nil
			}
			return f, nil
		})
		r := tn.Route("r", target, eng.links([]host.Link{{Name: "closer", Hook: hook}})...)
		r.DialTimeout = tn.Timeout
		p, logs := tn.Proxy(t, r)
		c := tn.Dial(t, p.Addr("r").String())
		defer c.Close()
		<-closed
		// Make room in the backlog: the tunnel's connect completes on its
		// next SYN.
		tv := unix.NsecToTimeval(int64(tn.Timeout)) // accept fails, not hangs, if no connect comes
		if err := unix.SetsockoptTimeval(lfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			t.Fatal(err)
		}
		filler, _, err := unix.Accept(lfd)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(filler)
		sfd, _, err := unix.Accept(lfd) // blocking: the tunnel's connection
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(sfd), "server")
		sc, err := net.FileConn(f) // a dup: closing sc alone would send no FIN
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		sc.SetDeadline(time.Now().Add(tn.Timeout))
		got, err := io.ReadAll(sc)
		if err != nil || len(got) != 0 {
			t.Errorf("the target got %q, %v; want nothing and a FIN", got, err)
		}
		sc.Close()
		if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
			t.Errorf("the client got %q, %v; want a clean EOF", got, err)
		}
		c.Close() // both peers gone: the tunnel's lingering close ends
		logs.Wait(t, "connection closed", "reason=filter_close")
	})
}

// TestReviewTimerZeroRearm: a filter whose Timer re-arms SetTimer(0) (a
// deadline already passed) must not take the route's loop for itself: the
// route's other connections are served, and Close ends the connection.
// The inline loop ran that timer over and over within one turn.
func TestReviewTimerZeroRearm(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		var stop atomic.Bool // lets the loop go if the test fails, for cleanup
		t.Cleanup(func() { stop.Store(true) })
		armed := make(chan struct{})
		var first atomic.Bool
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			f := &timerFilter{}
			if first.CompareAndSwap(false, true) {
				f.opened = func(s *host.Stream) error { close(armed); return s.SetTimer(0) }
			}
			f.timer = func(s *host.Stream) error {
				if stop.Load() {
					return nil
				}
				return s.SetTimer(0)
			}
			return f, nil
		})
		addr, p, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "spinner", Hook: hook})
		busy := tn.Dial(t, addr)
		defer busy.Close()
		<-armed
		other := tn.Dial(t, addr)
		defer other.Close()
		other.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(other, "ping\n")
		got := make([]byte, 5)
		if _, err := io.ReadFull(other, got); err != nil || string(got) != "ping\n" {
			stop.Store(true)
			t.Fatalf("another connection of the route: %q, %v; want its echo", got, err)
		}
		p.Close()
		logs.WaitCount(t, 2, "connection closed")
	})
}

// TestReviewNothingAfterAbort: a filter that aborts its own connection
// from a callback (Stream.Abort: "closes the connection at once") and goes
// on sending: nothing sent after the abort reaches the server. The inline
// engine only posted the abort for the loop's next turn and wrote what the
// callback sent meanwhile.
func TestReviewNothingAfterAbort(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		got := make(chan []byte, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) {
			b, _ := io.ReadAll(c) // until the reset or EOF
			got <- b
		})
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{data: func(dir host.Direction, b []byte, s *host.Stream) error {
				if dir == host.ClientToServer && strings.Contains(string(b), "BAD") {
					s.Abort(errors.New("bad request"))
					return s.Send(dir, []byte("LEAK")) // too late: the connection is aborted
				}
				return s.Send(dir, b)
			}}, nil
		})
		addr, _, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "waf", Hook: hook})
		c := tn.Dial(t, addr)
		defer c.Close()
		if _, err := c.Write([]byte("BAD\n")); err != nil {
			t.Fatal(err)
		}
		logs.Wait(t, "connection closed", "reason=filter_error", "bad request")
		if b := <-got; strings.Contains(string(b), "LEAK") {
			t.Errorf("the server got %q: bytes sent after the abort", b)
		}
	})
}
