package host_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// busyFilter answers every client with a banner and closes at once.
type busyFilter struct{ host.PassThrough }

func (busyFilter) Opened(s *host.Stream) error {
	if err := s.Send(host.ServerToClient, []byte("busy, try later\n")); err != nil {
		return err
	}
	s.Close()
	return nil
}

type busyHook struct{}

func (busyHook) Open(*host.ConnInfo) (host.Filter, error) { return busyFilter{}, nil }

// A filter that closes while opening still delivers what it sent to the
// client, and the target is never dialled.
func TestCloseWhileOpeningDeliversTheAnswerAndNeverDials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dialled := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dialled <- struct{}{}
			c.Close()
		}
	}()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	if err := p.Apply([]host.Route{{Name: "busy", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: []host.Link{{Name: "busy", Hook: busyHook{}}}}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr("busy").String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "busy, try later\n" {
		t.Fatalf("client read %q, %v; want the banner then EOF", got, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ln.Close() // the proxy is closed: any dial would have happened by now
	select {
	case <-dialled:
		t.Fatal("the target was dialled although the filter closed while opening")
	default:
	}
}

// TestCloseDeliversWithUnreadInput: Stream.Close promises to close "once
// the bytes already sent are written". When the client has sent bytes the
// tunnel has not read yet, close(2) on its socket would send a reset and the
// kernel would discard what is still queued toward the client — the goodbye
// and the tail of the server's bytes. The client here is slow to read (so
// the queue toward it is not empty) and pipelines lines after QUIT.
// (Found and written by the examples engineer.)
func TestCloseDeliversWithUnreadInput(t *testing.T) {
	t.Parallel()
	sawQuit := make(chan struct{}, 1)
	hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
		return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
			if dir == host.ClientToServer && bytes.Contains(chunk, []byte("QUIT")) {
				s.Close()
				sawQuit <- struct{}{}
				return s.Send(host.ServerToClient, []byte("bye\n"))
			}
			return s.Send(dir, chunk)
		}}, nil
	})
	srv := tn.Serve(t, func(c *net.TCPConn) {
		c.Write(make([]byte, 8<<20))
		io.Copy(io.Discard, c)
	})
	addr, _ := tunnel(t, tn.Route("test", srv.Addr(), host.Link{Name: "quit", Hook: hook}))
	c := tn.Dial(t, addr)
	io.ReadFull(c, make([]byte, 1<<20)) // the flood is under way
	io.WriteString(c, "QUIT\n")
	<-sawQuit
	for range 10 {
		io.WriteString(c, "pipelined after QUIT\n") // left unread in the tunnel
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.HasSuffix(got, []byte("bye\n")) {
		t.Errorf("client got %d more bytes ending %q, then %v; want the goodbye, then a clean EOF",
			len(got), got[max(0, len(got)-8):], err)
	}
}
