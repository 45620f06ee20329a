package host_test

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// holdHook's filters pause the client's reads when the connection opens
// and resume them when the server's first bytes come: the client's request
// waits for the server's greeting. They count the client bytes they see
// before it.
type holdHook struct{ early chan int }

func (h holdHook) Open(*host.ConnInfo) (host.Filter, error) { return &holdFilter{h: h}, nil }

type holdFilter struct {
	host.PassThrough
	h       holdHook
	resumed bool
}

func (f *holdFilter) Opened(s *host.Stream) error { return s.PauseRead(host.ClientToServer) }

func (f *holdFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	switch {
	case dir == host.ClientToServer && !f.resumed:
		f.h.early <- len(b)
	case dir == host.ServerToClient && !f.resumed:
		f.resumed = true
		if err := s.ResumeRead(host.ClientToServer); err != nil {
			return err
		}
	}
	return s.Forward(dir, b)
}

// TestPauseReadResumedByTheOtherDirection: the client's request is already
// in the tunnel's socket when the server's greeting resumes its reads, from
// the other direction's Data: on the event loop no readiness event is left
// to come for it, and it must still be read.
func TestPauseReadResumedByTheOtherDirection(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		speak := make(chan struct{})
		srv := tn.Serve(t, func(c *net.TCPConn) {
			select {
			case <-speak:
			case <-time.After(2 * tn.Timeout):
				return
			}
			tn.SpeakFirst(c)
		})
		h := holdHook{early: make(chan int, 16)}
		addr, _ := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "hold", Hook: h}))
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("request\n")); err != nil {
			t.Fatal(err)
		}
		srv.WaitAccepted(t, 1)
		waitSent(t, c) // the request is in the tunnel's socket
		close(speak)
		want := tn.Welcome + "request\n"
		got := make([]byte, len(want))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
		select {
		case n := <-h.early:
			t.Fatalf("the filter saw %d client bytes before the server's greeting resumed the reads", n)
		default:
		}
	})
}

// waitSent waits until the peer's kernel has taken every byte written to c
// (nothing left in c's send queue).
func waitSent(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(tn.Timeout)
	for {
		var n int
		var ierr error
		rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		if ierr != nil {
			t.Fatalf("SIOCOUTQ: %v", ierr)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still unsent after %v", n, tn.Timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
