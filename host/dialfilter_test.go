package host_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// dialWatch is a host.DialFilter: it sends "O" toward the server from
// Opened (queued until the dial), counts its Dialled calls, records the
// target address it saw then, and sends "D" or, with refuse, fails.
type dialWatch struct {
	host.PassThrough
	calls  *atomic.Int32
	seen   *atomic.Pointer[netip.AddrPort]
	refuse bool
	panics bool
}

func (d dialWatch) Open(*host.ConnInfo) (host.Filter, error) { return d, nil }

func (d dialWatch) Opened(s *host.Stream) error { return s.Send(host.ClientToServer, []byte("O")) }

func (d dialWatch) Dialled(s *host.Stream) error {
	d.calls.Add(1)
	a := s.TargetAddr()
	d.seen.Store(&a)
	if d.refuse {
		return errors.New("target refused by its address")
	}
	if d.panics {
		panic("dial watcher bug")
	}
	return s.Send(host.ClientToServer, []byte("D"))
}

// TestDialFilter: on both engines that run filters, Dialled is called once
// the target is connected, with its address known, before what the chain
// queued toward it goes (a refusal there sends the server nothing and is
// counted filter_error), and never when the dial fails.
func TestDialFilter(t *testing.T) {
	t.Parallel()
	for _, engine := range []struct {
		name string
		hook func(host.Hook) host.Hook
	}{
		{"goroutines", func(h host.Hook) host.Hook { return h }},
		{"inline", func(h host.Hook) host.Hook { return inlineHook{h} }},
	} {
		t.Run(engine.name, func(t *testing.T) {
			t.Parallel()
			route := func(target string, w dialWatch) host.Route {
				return tn.Route("test", target, host.Link{Name: "watch", Hook: engine.hook(w)})
			}
			newWatch := func(refuse bool) dialWatch {
				return dialWatch{calls: new(atomic.Int32), seen: new(atomic.Pointer[netip.AddrPort]), refuse: refuse}
			}

			got := make(chan []byte, 1)
			srv := tn.Serve(t, recordEcho(got))
			w := newWatch(false)
			addr, _ := tunnel(t, route(srv.Addr(), w))
			c := tn.Dial(t, addr)
			c.Write([]byte("x"))
			c.CloseWrite()
			if echo, err := io.ReadAll(c); err != nil || string(echo) != "ODx" {
				t.Errorf("client got %q, %v; want the echo of ODx", echo, err)
			}
			if b := tn.Wait(t, got, "what the server received"); string(b) != "ODx" {
				t.Errorf("server got %q, want ODx: Opened's bytes, Dialled's, the client's", b)
			}
			if n, a := w.calls.Load(), w.seen.Load(); n != 1 || a == nil || a.String() != srv.Addr() {
				t.Errorf("Dialled called %d times, target address %v; want once, %s", n, a, srv.Addr())
			}

			got2 := make(chan []byte, 1)
			srv2 := tn.Serve(t, recordEcho(got2))
			w2 := newWatch(true)
			addr2, logs := tunnel(t, route(srv2.Addr(), w2))
			// The tunnel may reset the client before its connect returns.
			if c2, err := net.Dial("tcp", addr2); err == nil {
				if b, _ := io.ReadAll(c2); len(b) != 0 {
					t.Errorf("refused at the dial, the client got %q", b)
				}
				c2.Close()
			}
			if b := tn.Wait(t, got2, "what the server received"); len(b) != 0 {
				t.Errorf("refused at the dial, the server got %q; want nothing", b)
			}
			logs.Wait(t, "connection closed", "reason=filter_error", "target refused by its address")

			// A Dialled that panics is a failed filter, as any callback's
			// panic: its connection closes, counted filter_error.
			wp := newWatch(false)
			wp.panics = true
			srvP := tn.Serve(t, tn.Echo)
			addrP, logsP := tunnel(t, route(srvP.Addr(), wp))
			if cp, err := net.Dial("tcp", addrP); err == nil {
				io.ReadAll(cp)
				cp.Close()
			}
			logsP.Wait(t, "connection closed", "reason=filter_error", "dial watcher bug")
			if n := wp.calls.Load(); n != 1 {
				t.Errorf("the panicking Dialled ran %d times, want 1", n)
			}

			w3 := newWatch(false)
			addr3, logs3 := tunnel(t, route(testkit.Refusing(t), w3))
			if c3, err := net.Dial("tcp", addr3); err == nil {
				io.ReadAll(c3)
				c3.Close()
			}
			logs3.Wait(t, "connection closed", "reason=dial_failed")
			if n := w3.calls.Load(); n != 0 {
				t.Errorf("Dialled called %d times for a failed dial", n)
			}
		})
	}
}
