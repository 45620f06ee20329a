//go:build linux

package evloop

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// stuckTarget is a loopback address a connect(2) gets no answer from: a
// dial stays in progress.
func stuckTarget(t *testing.T) netip.AddrPort {
	return netip.MustParseAddrPort(testkit.BlackHole(t))
}

// TestReviewAbortWhileDialling: Output.Abort during the dial ends the
// connection as Aborted (as Loop.Abort does), not as a failed dial.
func TestReviewAbortWhileDialling(t *testing.T) {
	checkFDs(t)
	outs := make(chan *Output, 1)
	a, addr := startChained(t, stuckTarget(t), func() Chain {
		return &funcChain{open: func(o *Output) error { outs <- o; return nil }}
	})
	c := dial(t, addr)
	defer c.Close()
	cause := errors.New("test abort")
	(<-outs).Abort(cause)
	if s := a.waitDone(t); s.Reason != Aborted || s.Err != cause {
		t.Errorf("Done: %v, %v; want Aborted with the abort's cause", s.Reason, s.Err)
	}
}

// TestReviewOpenFails: a Chain whose Open fails ends the connection as
// Failed with Open's error; nothing was dialled, so not DialFailed.
func TestReviewOpenFails(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	refused := errors.New("refused")
	a, addr := startChained(t, target, func() Chain {
		return &funcChain{open: func(*Output) error { return refused }}
	})
	// The reset may come before connect returns: either is fine here.
	if c, err := net.DialTimeout("tcp", addr, testWait); err == nil {
		defer c.Close()
	}
	if s := a.waitDone(t); s.Reason != Failed || s.Err != refused || s.Connected {
		t.Errorf("Done: %v, %v, connected %v; want Failed with Open's error", s.Reason, s.Err, s.Connected)
	}
}

// TestReviewTimerZeroRearm: a Chain whose Timer re-arms itself with 0 (a
// deadline already passed, "again as soon as possible") must not keep the
// loop in its timers: the loop still serves its inbox (Abort) and its
// other connections. It ran the timer over and over inside one turn.
func TestReviewTimerZeroRearm(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	var fires atomic.Int64
	var stop atomic.Bool // lets the loop go if the test fails, for cleanup
	outs := make(chan *Output, 2)
	var made atomic.Int64
	tenth := make(chan struct{}) // the timer has fired ten times
	a, addr := startChained(t, target, func() Chain {
		first := made.Add(1) == 1
		return &funcChain{
			open: func(o *Output) error {
				if first {
					o.SetTimer(0)
					outs <- o
				}
				return nil
			},
			timer: func(o *Output) error {
				if fires.Add(1) == 10 {
					close(tenth)
				}
				if !stop.Load() {
					o.SetTimer(0)
				}
				return nil
			},
		}
	})
	c := dial(t, addr)
	defer c.Close()
	o := <-outs
	select {
	case <-tenth:
	case <-time.After(testWait):
		stop.Store(true)
		t.Fatalf("the timer fired %d times, want it again and again", fires.Load())
	}
	// Another connection of the loop is served meanwhile.
	other := dial(t, addr)
	defer other.Close()
	other.SetDeadline(time.Now().Add(testWait))
	io.WriteString(other, "ping")
	got := make([]byte, 4)
	_, err := io.ReadFull(other, got)
	if err != nil || string(got) != "ping" {
		stop.Store(true)
		t.Fatalf("another connection of the loop: %q, %v; want its echo", got, err)
	}
	o.Abort(errors.New("test abort"))
	select {
	case s := <-a.done:
		if s.Reason != Aborted {
			t.Errorf("Done: %v, %v; want Aborted", s.Reason, s.Err)
		}
	case <-time.After(testWait):
		stop.Store(true)
		t.Fatal("Abort not done: the loop never left its timers")
	}
	stop.Store(true)
}

// TestClientResetWhileDialling: a client that resets while its target is
// still being dialled ends the connection as Failed, not as a failed dial
// (the close line said dial_failed, and the route counted a dial failure).
func TestClientResetWhileDialling(t *testing.T) {
	checkFDs(t)
	target := stuckTarget(t)
	l, _, a, addr := startForwarder(t, target, fwdOptions{})
	c := dial(t, addr)
	waitFor(t, l, "the dial to start", func() bool { return a.accepted.Load() == 1 })
	c.SetLinger(0)
	c.Close()
	s := a.waitDone(t)
	if s.Reason != Failed || s.Connected {
		t.Errorf("end: %v (connected %v), %v; want Failed without a connection", s.Reason, s.Connected, s.Err)
	}
}
