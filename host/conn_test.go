package host_test

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
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
