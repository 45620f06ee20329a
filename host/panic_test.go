package host_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// panicHook's filters panic where their hook says: in Open, Opened, Data
// (on a chunk starting with "boom") or End.
type panicHook struct{ in string }

func (h panicHook) Open(*host.ConnInfo) (host.Filter, error) {
	if h.in == "Open" {
		panic("boom in Open")
	}
	if h.in == "nil" {
		return nil, nil
	}
	return panicFilter{in: h.in}, nil
}

type panicFilter struct {
	host.PassThrough
	in string
}

func (f panicFilter) Opened(*host.Stream) error {
	if f.in == "Opened" {
		panic("boom in Opened")
	}
	return nil
}

func (f panicFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if f.in == "Data" && strings.HasPrefix(string(b), "boom") {
		panic(errors.New("boom in Data"))
	}
	return s.Forward(dir, b)
}

func (f panicFilter) End(host.Direction, *host.Stream) error {
	if f.in == "End" {
		panic("boom in End")
	}
	return nil
}

// TestFilterPanicClosesItsConnection: a panic in a Go hook or filter
// (or an Open that returns no filter) once killed the process and every
// connection with it; it closes its own connection as a filter error,
// logged with its stack, and the next connection of the route works.
func TestFilterPanicClosesItsConnection(t *testing.T) {
	t.Parallel()
	enginesSeq(t, func(t *testing.T, eng engine) {
		for _, in := range []string{"Open", "nil", "Opened", "Data", "End"} {
			t.Run(in, func(t *testing.T) {
				srv := tn.Serve(t, tn.Echo)
				addr, logs := eng.tunnel(t, tn.Route("t", srv.Addr(), host.Link{Name: "p", Hook: panicHook{in: in}}))
				want, reason := "boom in "+in, "reason=filter_error"
				switch in {
				case "nil":
					want, reason = "the hook's Open returned a nil Filter", "reason=refused"
					expectRefused(t, addr)
				case "Open", "Opened":
					reason = "reason=refused" // as an error from Open or Opened
					expectRefused(t, addr)
				default:
					c := tn.Dial(t, addr)
					c.Write([]byte("boom"))
					c.CloseWrite()
					if got := tn.ReadSum(c); in == "Data" && got.N != 0 {
						t.Errorf("%d bytes came back through a filter that panicked", got.N)
					}
				}
				logs.Wait(t, "connection closed", reason, want)
				if in != "nil" {
					logs.Wait(t, "panic in a filter; closing its connection", "in="+in, "stack=")
				}
				if in == "Data" {
					// The route still serves: a connection that does not
					// trip the panic is echoed whole.
					if got := tn.Exchange(tn.Dial(t, addr), []byte("hello")); got.N != 5 {
						t.Errorf("the next connection got %d bytes, want 5", got.N)
					}
				}
			})
		}
	})
}
