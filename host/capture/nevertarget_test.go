package capture_test

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// busyAtOpen answers the client and closes from Opened, before the
// target is dialled (as ratelimit does): the target is never connected.
type busyAtOpen struct{ host.PassThrough }

func (busyAtOpen) Open(*host.ConnInfo) (host.Filter, error) { return busyAtOpen{}, nil }

func (busyAtOpen) Opened(s *host.Stream) error {
	if err := s.Send(host.ServerToClient, []byte("busy\n")); err != nil {
		return err
	}
	s.Close()
	return nil
}

// TestNoTargetLegWhenNeverConnected: a connection whose target was never
// connected (the dial was refused, or a filter closed it before the dial)
// has no target leg in the file: no handshake with a target that never
// answered, no FIN or RST from it. Such a leg used to be drawn whole, a
// SYN-ACK from a port where nothing listens.
func TestNoTargetLegWhenNeverConnected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, reason string
		target       func(t *testing.T) string
		chain        []host.Link
	}{
		{"dial refused", "reason=dial_failed", func(t *testing.T) string { return testkit.Refusing(t) }, nil},
		{"closed before the dial", "reason=filter_close", func(t *testing.T) string { return testkit.Refusing(t) },
			[]host.Link{{Name: "busy", Hook: busyAtOpen{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, "127.0.0.1:0", tc.target(t), capture.Options{}, tc.chain...)
			// The tunnel may reset the client before its connect returns.
			if c, err := net.Dial("tcp", s.addr); err == nil {
				io.ReadAll(c) // EOF or a reset: the connection is over
				c.Close()
			}
			s.logs.Wait(t, "connection closed", tc.reason)
			s.finish(t)
			f := tshark.Open(t, s.file)
			if target := f.Fields(func(p tshark.Packet) bool { return p.Is("frame.interface_id", "1") },
				"tcp.flags.str", "frame.comment"); len(target) != 0 {
				t.Errorf("target leg of a connection that never reached the target:\n%s\nwant no packet", strings.Join(target, "\n"))
			}
			if client := f.Fields(func(p tshark.Packet) bool { return p.Is("frame.interface_id", "0") }, "tcp.flags.str"); len(client) < 3 {
				t.Errorf("client leg: %q, want its handshake and end", client)
			}
		})
	}
}

// greetAtDial sends the client a greeting when the target is connected
// (host.DialFilter): the client reading it knows the dial is done.
type greetAtDial struct{ host.PassThrough }

func (greetAtDial) Open(*host.ConnInfo) (host.Filter, error) { return greetAtDial{}, nil }

func (greetAtDial) Dialled(s *host.Stream) error {
	return s.Send(host.ServerToClient, []byte("hi\n"))
}

// TestTargetHandshakeAtTheDial: the target leg's handshake is in the file
// as soon as the tunnel has connected to the target, before any byte
// crosses that leg. It used to be drawn at the leg's first byte, so a
// client that waited, or a server that spoke late, showed a target SYN
// long after the connection was made.
func TestTargetHandshakeAtTheDial(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, host.Link{Name: "greet", Hook: greetAtDial{}})
	c := testnet.Dial(t, s.addr)
	if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	s.w.Sync()
	target := tshark.Open(t, s.file).Fields(func(p tshark.Packet) bool { return p.Is("frame.interface_id", "1") }, "tcp.flags.str")
	if len(target) != 3 || !strings.Contains(target[0], "S") || !strings.Contains(target[2], "A") {
		t.Errorf("target leg once the tunnel has connected, before any byte: %q, want its SYN, SYN-ACK and ACK", target)
	}
	c.Close()
	s.finish(t)
}
