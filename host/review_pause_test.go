package host

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pauseGate pauses the client's reads when its connection opens, reports
// any client chunk it is shown while they are paused, and ticks its timer
// every 2 ms, closing ticked at the 25th tick after tick is set.
type pauseGate struct {
	PassThrough
	opened chan *Stream
	shown  chan []byte
	tick   chan struct{} // closed by the test: count the ticks from now
	ticked chan struct{}
	ticks  int
}

func (g *pauseGate) Open(*ConnInfo) (Filter, error) { return g, nil }

func (g *pauseGate) Opened(s *Stream) error {
	if err := s.PauseRead(ClientToServer); err != nil {
		return err
	}
	g.opened <- s
	return s.SetTimer(2 * time.Millisecond)
}

func (g *pauseGate) Data(dir Direction, b []byte, s *Stream) error {
	if dir == ClientToServer && s.ReadPaused(ClientToServer) {
		g.shown <- bytes.Clone(b)
	}
	return s.Forward(dir, b)
}

func (g *pauseGate) Timer(s *Stream) error {
	select {
	case <-g.tick:
		if g.ticks++; g.ticks == 25 {
			close(g.ticked)
		}
	default:
	}
	return s.SetTimer(2 * time.Millisecond)
}

// TestReviewAbortWhilePausedReadsNothing: a connection whose client reads
// a filter paused is aborted (a filter's Abort, the idle timeout, a
// shutdown): the pump that waited for the resume ends without reading the
// paused source. It used to take the abort's wake-up for a resume and read
// the client before teardown closed the sockets, showing the filter (and
// forwarding to the server) bytes it had paused.
func TestReviewAbortWhilePausedReadsNothing(t *testing.T) {
	t.Parallel()
	got := make(chan []byte, 1)
	target := serve(t, func(c net.Conn) {
		c.Write([]byte("hi"))
		b, _ := io.ReadAll(c)
		got <- b
	})
	g := &pauseGate{opened: make(chan *Stream, 1), shown: make(chan []byte, 4), tick: make(chan struct{}), ticked: make(chan struct{})}
	p := startProxy(t, nil, Route{Name: "g", Listen: "127.0.0.1:0", Target: target, Chain: []Link{{Name: "gate", Hook: g}}})
	c := dialRoute(t, p, "g")
	var s *Stream
	select {
	case s = <-g.opened:
	case <-time.After(time.Minute):
		t.Fatal("the connection did not open")
	}
	if _, err := c.Write([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	hi := make([]byte, 2)
	if _, err := io.ReadFull(c, hi); err != nil { // dialled: the pumps run
		t.Fatal(err)
	}
	// Hold teardown between its start (td.closed, which wakes the paused
	// pump) and the close of the sockets, which takes dlMu: the window in
	// which the pump would read the client.
	cn := s.c
	cn.dlMu.Lock()
	aborted := make(chan struct{})
	go func() {
		cn.abort(errors.New("denied"))
		close(aborted)
	}()
	<-cn.td.closed
	close(g.tick) // 25 ticks (50 ms): time for the woken pump to read, were it to
	select {
	case <-g.ticked:
	case <-time.After(time.Minute):
		t.Fatal("the filter's timer stopped")
	}
	cn.dlMu.Unlock()
	<-aborted
	select {
	case b := <-g.shown:
		t.Fatalf("the filter was shown %q of the paused client after the abort", b)
	default:
	}
	select {
	case b := <-got:
		if len(b) != 0 {
			t.Fatalf("the server got %q of the paused client after the abort", b)
		}
	case <-time.After(time.Minute):
		t.Fatal("the server's connection did not end")
	}
}
