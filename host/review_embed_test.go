package host_test

// Found by an embedder's review of the library: OnRelease's panics and
// locks, the order of Opened and Data, a Timer's failure and overflow
// counted as filter errors, a late dial to the route itself, and a Stream
// used once its connection is gone.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// TestOnReleasePanicIsRecovered: a route owner's OnRelease that panics is
// logged; the Apply that released it returns, every route it dropped
// stops listening, and the other owners' OnRelease still run. The panic
// once came out of Apply, leaving listeners accepting that no Close could
// reach and the other owners' plugins never closed.
func TestOnReleasePanicIsRecovered(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	released := make(chan string, 3)
	var routes []host.Route
	for _, name := range []string{"a", "b", "c"} {
		r := tn.Route(name, srv.Addr())
		r.OnRelease = func() {
			released <- name
			if name == "a" {
				panic("a's owner failed")
			}
		}
		routes = append(routes, r)
	}
	p, logs := tn.Proxy(t, routes...)
	var addrs []string
	for _, r := range routes {
		addrs = append(addrs, p.Addr(r.Name).String())
	}
	if err := p.Apply(nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range routes {
		select {
		case name := <-released:
			got = append(got, name)
		default:
		}
	}
	slices.Sort(got)
	if strings.Join(got, " ") != "a b c" {
		t.Errorf("OnRelease ran for %q, want a, b and c", got)
	}
	for _, a := range addrs {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Apply(nil)", a)
		}
	}
	logs.Wait(t, "panic in a route's OnRelease", "route=a", "a's owner failed")
}

// TestOnReleaseMayCallApply: OnRelease runs without the Proxy's locks, as
// documented, so an owner may apply from it. It ran under Apply's lock,
// and the nested Apply waited for it forever.
func TestOnReleaseMayCallApply(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p := &host.Proxy{Logger: tn.NewLogs().Logger()}
	t.Cleanup(func() { p.Close() })
	nested := make(chan error, 1)
	first := tn.Route("first", srv.Addr())
	first.OnRelease = func() { nested <- p.Apply([]host.Route{tn.Route("third", srv.Addr())}) }
	if err := p.Apply([]host.Route{first}); err != nil {
		t.Fatal(err)
	}
	applied := make(chan error, 1)
	go func() { applied <- p.Apply([]host.Route{tn.Route("second", srv.Addr())}) }()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(tn.Timeout):
		t.Fatal("Apply did not return: the Apply inside OnRelease waits for its lock")
	}
	if err := <-nested; err != nil {
		t.Fatalf("the Apply inside OnRelease: %v", err)
	}
	if p.Addr("third") == nil || p.Addr("second") != nil {
		t.Errorf("routes after both Applys: third at %v, second at %v; want only third", p.Addr("third"), p.Addr("second"))
	}
}

// greetHook's filters send a line toward the server from Opened.
type greetHook struct{}

func (greetHook) Open(*host.ConnInfo) (host.Filter, error) { return greetFilter{}, nil }

type greetFilter struct{ host.PassThrough }

func (greetFilter) Opened(s *host.Stream) error {
	return s.Send(host.ClientToServer, []byte("hello\n"))
}

// callsHook's filters record their callbacks, and hand the record over
// when the connection closes.
type callsHook struct{ got chan []string }

func (h *callsHook) Open(*host.ConnInfo) (host.Filter, error) { return &callsFilter{h: h}, nil }

type callsFilter struct {
	host.PassThrough
	h     *callsHook
	calls []string
}

func (f *callsFilter) Opened(*host.Stream) error {
	f.calls = append(f.calls, "Opened")
	return nil
}

func (f *callsFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	f.calls = append(f.calls, fmt.Sprintf("Data(%s)", dir))
	return s.Forward(dir, b)
}

func (f *callsFilter) Closed() { f.h.got <- f.calls }

// TestOpenedBeforeData: bytes a link sends from its Opened reach the next
// link after that link's own Opened, never before it (a filter sets up
// its state in Opened). The next link's Data came first.
func TestOpenedBeforeData(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		calls := &callsHook{got: make(chan []string, 1)}
		addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "greet", Hook: greetHook{}}, host.Link{Name: "calls", Hook: calls}))
		c := tn.Dial(t, addr)
		got := make([]byte, len("hello\n"))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello\n" {
			t.Fatalf("read %q, %v; want the greeting echoed", got, err)
		}
		c.Close()
		rec := <-calls.got
		if len(rec) < 2 || rec[0] != "Opened" || rec[1] != "Data(client -> server)" {
			t.Fatalf("the second link's calls: %q; want Opened, then the greeting's Data", rec)
		}
	})
}

// failingTimerHook's filters arm a timer whose callback fails.
type failingTimerHook struct{}

func (failingTimerHook) Open(*host.ConnInfo) (host.Filter, error) { return &failingTimer{}, nil }

type failingTimer struct{ host.PassThrough }

func (*failingTimer) Opened(s *host.Stream) error { return s.SetTimer(time.Millisecond) }
func (*failingTimer) Timer(*host.Stream) error    { return errors.New("the timer says no") }

// TestTimerErrorIsAFilterError: a Timer that returns an error aborts its
// connection with Reason filter_error on both engines. The goroutine
// engine counted it as a reset.
func TestTimerErrorIsAFilterError(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		addr, p, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "failing", Hook: failingTimerHook{}})
		expectRefused(t, addr) // (the abort may come before the client's connect returns)
		logs.Wait(t, "connection closed", "reason=filter_error", "the timer says no")
		if st := routeStats(t, p, "test"); st.Closed["filter_error"] != 1 || st.Closed["reset"] != 0 {
			t.Errorf("closed %v; want one filter_error", st.Closed)
		}
	})
}

// floodHook's filters send 1 MiB toward the client from their timer, again
// and again.
type floodHook struct{}

func (floodHook) Open(*host.ConnInfo) (host.Filter, error) { return &floodFilter{}, nil }

type floodFilter struct {
	host.PassThrough
	chunk []byte
}

func (f *floodFilter) Opened(s *host.Stream) error {
	f.chunk = make([]byte, 1<<20)
	return s.SetTimer(0)
}

func (f *floodFilter) Timer(s *host.Stream) error {
	if err := s.Send(host.ServerToClient, f.chunk); err != nil {
		return err
	}
	return s.SetTimer(0)
}

// TestTimerFloodIsAFilterError: on an inline route, what a Timer sends to
// a client that does not read is queued up to its bound (64 MiB), and the
// connection then ends as the filter's failure, not as a reset no peer
// made.
func TestTimerFloodIsAFilterError(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	addr, p, logs := engine{inline: true}.Tunnel(t, srv.Addr(), host.Link{Name: "flood", Hook: floodHook{}})
	c := tn.Dial(t, addr) // never read
	logs.Wait(t, "connection closed", "reason=filter_error", "which does not read them: over the limit of")
	if st := routeStats(t, p, "test"); st.Closed["filter_error"] != 1 || st.Closed["reset"] != 0 {
		t.Errorf("closed %v; want one filter_error", st.Closed)
	}
	c.Close()
}

// selfHook's filters choose the route's own address as the target.
type selfHook struct {
	mu   sync.Mutex
	addr string
	errs chan error
}

func (h *selfHook) Open(*host.ConnInfo) (host.Filter, error) { return &selfFilter{h: h}, nil }

type selfFilter struct {
	host.PassThrough
	h *selfHook
}

func (f *selfFilter) Opened(s *host.Stream) error {
	f.h.mu.Lock()
	addr := f.h.addr
	f.h.mu.Unlock()
	err := s.SetTarget(addr)
	select {
	case f.h.errs <- err:
	default: // (the tunnel dialling itself, before the fix)
	}
	return err
}

// TestSetTargetRefusesTheRouteItself: a late dial to the route's own
// address is refused, as a fixed target is by Apply. One client made the
// tunnel dial itself as often as the chain chose it.
func TestSetTargetRefusesTheRouteItself(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			h := &selfHook{errs: make(chan error, 8)}
			p, logs := tn.Proxy(t, lateRoute(hostLink("self", h)))
			addr := p.Addr("late").String()
			_, port, _ := net.SplitHostPort(addr)
			self := net.JoinHostPort(host, port)
			h.mu.Lock()
			h.addr = self
			h.mu.Unlock()
			expectRefused(t, addr)
			err := <-h.errs
			want := "set target: " + self + " is the route's own listen address "
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("SetTarget(own address) = %v, want %q…", err, want)
			}
			logs.Wait(t, "connection closed", "reason=refused")
			if st := routeStats(t, p, "late"); st.Accepted != 1 {
				t.Errorf("accepted %d connections; want the client's alone", st.Accepted)
			}
		})
	}
}

// hostLink is a link to h.
func hostLink(name string, h host.Hook) host.Link { return host.Link{Name: name, Hook: h} }

// keepHook's first link keeps its Stream past its callbacks (which the
// documentation forbids) and uses it once the connection is gone.
type keepHook struct{ kept chan *host.Stream }

func (h *keepHook) Open(*host.ConnInfo) (host.Filter, error) { return &keepFilter{h: h}, nil }

type keepFilter struct {
	host.PassThrough
	h *keepHook
	s *host.Stream
}

func (f *keepFilter) Opened(s *host.Stream) error {
	f.s = s
	return nil
}

func (f *keepFilter) Closed() { f.h.kept <- f.s }

// TestStreamAfterCloseFailsCleanly: Send, Forward and SetTimer on a Stream
// kept past its connection's end fail with ErrWriteClosed. With a second
// link, Send once panicked with an index out of range.
func TestStreamAfterCloseFailsCleanly(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		h := &keepHook{kept: make(chan *host.Stream, 1)}
		addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "keep", Hook: h}, host.Link{Name: "calls", Hook: &callsHook{got: make(chan []string, 1)}}))
		tn.Dial(t, addr).Close()
		s := <-h.kept
		if err := s.Send(host.ClientToServer, []byte("late")); !errors.Is(err, host.ErrWriteClosed) {
			t.Errorf("Send after the end: %v, want ErrWriteClosed", err)
		}
		if err := s.Forward(host.ServerToClient, []byte("late")); !errors.Is(err, host.ErrWriteClosed) {
			t.Errorf("Forward after the end: %v, want ErrWriteClosed", err)
		}
		if err := s.SetTimer(time.Millisecond); !errors.Is(err, host.ErrWriteClosed) {
			t.Errorf("SetTimer after the end: %v, want ErrWriteClosed", err)
		}
	})
}

// sendIgnoringHook's filters send from Opened and ignore what Send says.
type sendIgnoringHook struct{}

func (sendIgnoringHook) Open(*host.ConnInfo) (host.Filter, error) { return sendIgnoring{}, nil }

type sendIgnoring struct{ host.PassThrough }

func (sendIgnoring) Opened(s *host.Stream) error {
	s.Send(host.ClientToServer, []byte("hello\n")) // its error ignored
	return nil
}

// failOpenedHook's filters fail in Opened, and count the Data calls they
// get all the same.
type failOpenedHook struct{ data atomic.Int32 }

func (h *failOpenedHook) Open(*host.ConnInfo) (host.Filter, error) { return &failOpened{h: h}, nil }

type failOpened struct {
	host.PassThrough
	h *failOpenedHook
}

func (*failOpened) Opened(*host.Stream) error { return errors.New("cannot open") }

func (f *failOpened) Data(dir host.Direction, b []byte, s *host.Stream) error {
	f.h.data.Add(1)
	return s.Forward(dir, b)
}

// TestOpenedFailureNotSwallowed: a link whose Opened runs early (bytes
// from an earlier link's Opened reach it) and fails refuses the
// connection, even when the sender ignores its Send's error; it gets no
// Data, and the links after it never open.
func TestOpenedFailureNotSwallowed(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		failing, after := &failOpenedHook{}, &callsHook{got: make(chan []string, 1)}
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), hostLink("ignoring", sendIgnoringHook{}), hostLink("ignoring2", sendIgnoringHook{}), hostLink("failing", failing), hostLink("after", after)))
		expectRefused(t, addr)
		logs.Wait(t, "connection closed", "reason=refused", "failing: cannot open")
		if n := failing.data.Load(); n != 0 {
			t.Errorf("the link whose Opened failed got %d Data calls", n)
		}
		if rec := <-after.got; len(rec) != 0 {
			t.Errorf("the link after the failed one: %q; want no call but Closed", rec)
		}
	})
}

// TestOpenedCloseOpensNoLaterLink: a link that closes the connection in its
// Opened (a rate limit turning a client away with a reply) is the last to
// open, as one that refuses it is: the links after it are told Closed and
// nothing else, and the target is never dialled. They were opened (a guest
// call each, for every connection turned away), then closed.
func TestOpenedCloseOpensNoLaterLink(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		after := &callsHook{got: make(chan []string, 1)}
		away := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{opened: func(s *host.Stream) error {
				s.Close()
				return s.Send(host.ServerToClient, []byte("busy, try later\n"))
			}}, nil
		})
		addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "away", Hook: away}, host.Link{Name: "after", Hook: after}))
		c := tn.Dial(t, addr)
		c.SetReadDeadline(time.Now().Add(tn.Timeout))
		if got, err := io.ReadAll(c); string(got) != "busy, try later\n" || err != nil {
			t.Fatalf("the client got %q, %v; want the reply, then the end", got, err)
		}
		c.Close() // else the tunnel lingers for the client's end
		logs.Wait(t, "connection closed", "reason=filter_close")
		if rec := <-after.got; len(rec) != 0 {
			t.Errorf("the link after the closing one: %q; want no call but Closed", rec)
		}
		if n := srv.Accepted(); n != 0 {
			t.Errorf("target accepted %d connections, want 0", n)
		}
	})
}
