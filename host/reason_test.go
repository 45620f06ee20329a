package host_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestCloseReasons: the close log line says who closed and why, on every
// engine path.
func TestCloseReasons(t *testing.T) {
	t.Parallel()
	for _, path := range enginePaths[:3] { // loop, goroutines (spliced), filtered
		t.Run(path.name, func(t *testing.T) {
			echo := tn.Serve(t, tn.Echo)
			bye := tn.Serve(t, func(c *net.TCPConn) { c.Write([]byte("bye")); c.CloseWrite(); io.Copy(io.Discard, c) })
			idle := path.route(t, "idle", echo.Addr())
			idle.IdleTimeout = 100 * time.Millisecond
			p, logs := tn.Proxy(t, path.route(t, "echo", echo.Addr()), path.route(t, "bye", bye.Addr()),
				path.route(t, "down", testkit.Refusing(t)), idle)

			tn.Exchange(tn.Dial(t, p.Addr("echo").String()), []byte("hi"))
			logs.Wait(t, "connection closed", "route=echo", "reason=client_eof")

			c := tn.Dial(t, p.Addr("bye").String())
			io.ReadAll(c)
			c.Close()
			logs.Wait(t, "connection closed", "route=bye", "reason=server_eof")

			expectRefused(t, p.Addr("down").String())
			logs.Wait(t, "connection closed", "route=down", "reason=dial_failed")

			expectClosed(t, tn.Dial(t, p.Addr("idle").String()))
			logs.Wait(t, "connection closed", "route=idle", "reason=idle_timeout")

			c = tn.Dial(t, p.Addr("echo").String())
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			io.ReadFull(c, make([]byte, 1))
			c.SetLinger(0)
			c.Close()
			logs.Wait(t, "connection closed", "route=echo", "reason=reset")

			c = tn.Dial(t, p.Addr("echo").String())
			c.Write([]byte("x"))
			io.ReadFull(c, make([]byte, 1))
			p.Close()
			logs.Wait(t, "connection closed", "route=echo", "reason=shutdown")
		})
	}
}

// TestCloseReasonsOfFilters: a filter's close, error and refusal.
func TestCloseReasonsOfFilters(t *testing.T) {
	t.Parallel()
	echo := tn.Serve(t, tn.Echo)
	failing := host.ChunkFunc(func(*host.ConnInfo, host.Direction, []byte) ([]byte, error) {
		return nil, errors.New("no thanks")
	})
	p, logs := tn.Proxy(t,
		tn.Route("bye", echo.Addr(), host.Link{Name: "bye", Hook: &byeHook{}}),
		tn.Route("fail", echo.Addr(), host.Link{Name: "fail", Hook: failing}),
		tn.Route("refuse", echo.Addr(), host.Link{Name: "refuse", Hook: refuseHook{}}))

	c := tn.Dial(t, p.Addr("bye").String())
	io.ReadAll(c)
	c.Close()
	logs.Wait(t, "connection closed", "route=bye", "reason=filter_close")

	c = tn.Dial(t, p.Addr("fail").String())
	c.Write([]byte("x"))
	expectClosedAfterBytes(t, c)
	logs.Wait(t, "connection closed", "route=fail", "reason=filter_error", "no thanks")

	expectRefused(t, p.Addr("refuse").String())
	logs.Wait(t, "connection closed", "route=refuse", "reason=refused")
}

// refuseHook refuses every connection.
type refuseHook struct{}

func (refuseHook) Open(*host.ConnInfo) (host.Filter, error) {
	return nil, errors.New("closed for lunch")
}
