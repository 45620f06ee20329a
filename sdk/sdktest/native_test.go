package sdktest_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// holder holds everything it is shown, or returns a bogus action for "bad".
type holder struct{ sdk.DefaultHandler }

func (holder) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if bytes.Equal(data, []byte("bad")) {
		return 7
	}
	if bytes.HasPrefix(data, []byte("fwd")) {
		return sdk.Forward
	}
	return sdk.Hold
}

// greeter sends toward both peers from NewConn, then refuses the
// connection (config "refuse") or closes it (config "close").
type greeter struct{ how string }

func (g greeter) NewConn(c *sdk.Conn) (sdk.Handler, error) {
	c.Send(sdk.ServerToClient, []byte("busy"))
	c.Send(sdk.ClientToServer, []byte("hello"))
	if g.how == "refuse" {
		return nil, errors.New("refused")
	}
	c.Close()
	return holder{}, nil
}

// closer closes the connection at its first chunk and reports, as its
// reply, the statuses of a Send and a huge Send after the Close.
type closer struct{ sdk.DefaultHandler }

func (closer) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if string(data) == "long log" {
		sdk.Log(sdk.LevelInfo, strings.Repeat("x", 5<<10))
		return sdk.Drop
	}
	if string(data) == "panic" {
		panic("boom")
	}
	if string(data) == "flood" {
		c.Send(dir, make([]byte, 5<<20))
		return sdk.Drop
	}
	c.Close()
	if err := c.Send(dir.Reverse(), []byte("after close")); err != sdk.ErrClosed {
		sdk.Log(sdk.LevelError, fmt.Sprint("Send after Close: ", err))
	}
	if err := c.CloseWrite(dir); err != nil {
		sdk.Log(sdk.LevelError, fmt.Sprint("CloseWrite after Close: ", err))
	}
	return sdk.Drop
}

// OnClose reports a Send that is not refused with an ErrNotAllowed whose
// text says why.
func (closer) OnClose(c *sdk.Conn) {
	if err := c.Send(sdk.ServerToClient, []byte("x")); err != sdk.ErrNotAllowed || !strings.Contains(err.Error(), "in OnClose") {
		sdk.Log(sdk.LevelError, fmt.Sprint("Send in OnClose: ", err))
	}
	if err := c.Send(sdk.Direction(7), []byte("x")); err != sdk.ErrBadArgument {
		sdk.Log(sdk.LevelError, fmt.Sprint("Send toward direction 7 in OnClose: ", err))
	}
}

func init() {
	sdk.SetBufferSize(1) // raised to 1 KiB
	sdk.Register(func(cfg []byte) (sdk.Plugin, error) {
		switch string(cfg) {
		case "refuse", "close":
			return greeter{string(cfg)}, nil
		case "closer":
			return sdk.Shared(closer{}), nil
		case "notimer":
			return noTimer{}, nil
		case "targeter":
			return sdk.Shared(targeter{}), nil
		case "pauser":
			lastPauser = &pauser{}
			return sdk.Shared(lastPauser), nil
		}
		return sdk.Shared(holder{}), nil
	})
}

// fakeTB records the first fatal failure and stops the goroutine, as
// testing.T does.
type fakeTB struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.fatal = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// fails runs body with a fake TB and returns its fatal message.
func fails(t *testing.T, body func(tb testing.TB)) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for _, fn := range f.cleanups {
		fn()
	}
	return f.fatal
}

func TestEmulatorCatchesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		body       func(p sdktest.Plugin)
	}{
		{"hold with a full buffer", "ABI violation: OnData returned Hold for 1024 bytes, a full input buffer (1024 bytes)", func(p sdktest.Plugin) {
			p.Open().Write(sdk.ClientToServer, make([]byte, 2000))
		}},
		{"not an action", "sdktest: tunnel_on_data returned 7, not an action", func(p sdktest.Plugin) {
			p.Open().Write(sdk.ClientToServer, []byte("bad"))
		}},
		{"write after end", "sdktest: Write(client -> server) after End(client -> server)", func(p sdktest.Plugin) {
			c := p.Open()
			c.End(sdk.ClientToServer)
			c.Write(sdk.ClientToServer, []byte("x"))
		}},
		{"read more than arrived", `sdktest: want 5 bytes server -> client, only 3 arrived: "fwd"`, func(p sdktest.Plugin) {
			c := p.Open()
			c.Write(sdk.ServerToClient, []byte("fwd"))
			c.Read(sdk.ServerToClient, 5)
		}},
		{"read all of an open stream", "sdktest: ReadAll(client -> server): the stream toward the server has not ended", func(p sdktest.Plugin) {
			p.Open().ReadAll(sdk.ClientToServer)
		}},
		{"wait on an open connection", "sdktest: Wait: connection #1 is still open", func(p sdktest.Plugin) {
			p.Open().Wait()
		}},
		{"send past the output budget", "sdktest: ABI violation: send: the call produced more than its output budget of 4194304 bytes", func(p sdktest.Plugin) {
			p.Open().Write(sdk.ClientToServer, []byte("flood"))
		}},
		// It used to end the test binary, the package's other tests unrun.
		{"a panic in OnData, the budget's closer", "sdktest: the plugin panicked in OnData: ", func(p sdktest.Plugin) {
			p.Open().Write(sdk.ClientToServer, []byte("panic"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ""
			if strings.Contains(tc.name, "budget") { // and the closer's panic
				cfg = "closer"
			}
			got := fails(t, func(tb testing.TB) { tc.body(sdktest.MustStart(tb, sdktest.Native, sdktest.Options{Config: cfg})) })
			if !strings.Contains(got, tc.want) {
				t.Fatalf("failure %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestHoldPresentsHeldBytesFirstAndFlushesAtEnd(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{})
	c := p.Open()
	c.Write(sdk.ClientToServer, []byte("ab"))
	c.Write(sdk.ClientToServer, []byte("cd"))
	c.Write(sdk.ServerToClient, []byte("fwd"))
	if got := c.Read(sdk.ServerToClient, 3); string(got) != "fwd" {
		t.Fatalf("got %q", got)
	}
	c.End(sdk.ClientToServer) // held bytes at the end are forwarded
	if got := c.ReadAll(sdk.ClientToServer); string(got) != "abcd" {
		t.Fatalf("got %q", got)
	}
	c.End(sdk.ServerToClient)
	c.Wait()
}

// What NewConn sends is dropped when it refuses the connection, and what it
// sends toward the server is dropped when it closes it: the target is
// never dialled (ABI.md, tunnel_on_open).
func TestNewConnSendsOfARefusedOrClosedConnection(t *testing.T) {
	for _, tc := range []struct{ config, client, server string }{
		{"refuse", "", ""},
		{"close", "busy", ""},
	} {
		p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{Config: tc.config})
		c := p.Open()
		if got := c.ReadAll(sdk.ServerToClient); string(got) != tc.client {
			t.Errorf("%s: the client got %q, want %q", tc.config, got, tc.client)
		}
		if got := c.ReadAll(sdk.ClientToServer); string(got) != tc.server {
			t.Errorf("%s: the server got %q, want %q", tc.config, got, tc.server)
		}
		c.Wait()
	}
}

// After Close in a callback, Send returns ErrClosed and delivers nothing,
// as the host's send returns StatusClosed on a closing connection, and
// CloseWrite does nothing, without error; in OnClose Send returns
// ErrNotAllowed, whose text names OnClose, but ErrBadArgument toward a
// direction that does not exist: the host checks the arguments first (the
// emulator gave ErrNotAllowed, and ErrClosed for the CloseWrite).
func TestSendAfterCloseIsClosed(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{Config: "closer"})
	c := p.Open()
	c.Write(sdk.ClientToServer, []byte("x"))
	if got := c.ReadAll(sdk.ServerToClient); len(got) != 0 {
		t.Errorf("the client got %q after Close", got)
	}
	c.Wait()
	if logs := p.Logs(); len(logs) != 0 {
		t.Errorf("logs %v", logs)
	}
}

// A log message is cut at 4 KiB, as the host cuts it.
func TestLogCutAt4KiB(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{Config: "closer"})
	c := p.Open()
	c.Write(sdk.ClientToServer, []byte("long log"))
	if logs := p.Logs(); len(logs) != 1 || len(logs[0].Msg) != 4<<10 {
		t.Fatalf("logs: %d, first %d bytes", len(logs), len(logs[0].Msg))
	}
	sdktest.Finish(c)
}

// pauser pauses the client's reads at each chunk and resumes them from its
// timer; it counts what it is shown.
type pauser struct {
	sdk.DefaultHandler
	shown int
}

// lastPauser is the pauser the emulator made last (it runs in process).
var lastPauser *pauser

func (p *pauser) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	p.shown += len(data)
	c.PauseRead(sdk.ClientToServer)
	c.SetTimer(time.Second)
	return sdk.Drop
}

func (p *pauser) OnTimer(c *sdk.Conn) { c.ResumeRead(sdk.ClientToServer) }

// TestResumeShowsOneTunnelRead: after a resume the plugin is shown the
// Writes that one read of the tunnel takes whole from the socket (at most
// 64 KiB), even when it pauses again meanwhile, and not the next one, which
// that read cuts: plugintest's tunnel shows the same (it was shown whole
// Writes past 64 KiB).
func TestResumeShowsOneTunnelRead(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{Config: "pauser"})
	c := p.Open()
	c.Write(sdk.ClientToServer, []byte("x"))
	for range 3 {
		c.Write(sdk.ClientToServer, make([]byte, 40000))
	}
	before := lastPauser.shown
	p.Advance(time.Second)
	if got := lastPauser.shown - before; got != 40000 {
		t.Fatalf("shown %d bytes after one resume, want 40000 (the one Write a read of the tunnel holds whole)", got)
	}
	p.Advance(time.Second)
	if got := lastPauser.shown - before; got != 80000 {
		t.Fatalf("shown %d bytes after two resumes, want 80000", got)
	}
}

// noTimer arms its connection's timer in NewConn and at each chunk, but
// its handler has no OnTimer: the chunk's SetTimer error is its reply.
type noTimer struct{ sdk.DefaultHandler }

func (noTimer) NewConn(c *sdk.Conn) (sdk.Handler, error) {
	if err := c.SetTimer(time.Second); err != nil {
		sdk.Log(sdk.LevelError, "SetTimer in NewConn: "+err.Error())
	}
	return noTimer{}, nil
}

func (noTimer) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if err := c.SetTimer(time.Second); err != nil {
		c.Send(dir.Reverse(), []byte(err.Error()))
	}
	return sdk.Drop
}

// A handler without OnTimer cannot arm its timer from OnData (ErrNoTimer);
// one armed from NewConn, before the handler is known, fires with a
// warning rather than silently.
func TestTimerWithoutOnTimer(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{Config: "notimer"})
	c := p.Open()
	p.Advance(time.Second)
	want := []sdktest.Log{{Level: sdk.LevelWarn, Msg: sdk.ErrNoTimer.Error()}}
	if logs := p.Logs(); !slices.Equal(logs, want) {
		t.Fatalf("logs %q, want %q", logs, want)
	}
	c.Write(sdk.ClientToServer, []byte("arm"))
	if got := c.Read(sdk.ServerToClient, len(sdk.ErrNoTimer.Error())); string(got) != sdk.ErrNoTimer.Error() {
		t.Fatalf("the client got %q", got)
	}
	sdktest.Finish(c)
}

// targeter chooses the target each chunk names and replies with the
// outcome.
type targeter struct{ sdk.DefaultHandler }

func (targeter) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if len(data) > 0 {
		reply := "ok"
		if err := c.SetTarget(string(data)); err != nil {
			reply = err.Error()
		}
		c.Send(dir.Reverse(), []byte(reply))
	}
	return sdk.Drop
}

// The emulated route's own listen address, however written, is refused as
// a target (ErrBadArgument), as the host refuses a loop; the emulator took
// it.
func TestSetTargetRefusesTheRouteItself(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{Config: "targeter", LateDial: true})
	for _, addr := range []string{sdktest.EmulatedListen, "localhost:8000", "0.0.0.0:8000", "[::ffff:127.0.0.1]:8000"} {
		c := p.Open()
		c.Write(sdk.ClientToServer, []byte(addr))
		if got := c.Read(sdk.ServerToClient, len(sdk.ErrBadArgument.Error())); string(got) != sdk.ErrBadArgument.Error() {
			t.Errorf("SetTarget(%q): %q, want %q", addr, got, sdk.ErrBadArgument)
		}
		c.Abort()
		c.Wait()
	}
	c := p.Open()
	c.Write(sdk.ClientToServer, []byte("127.0.0.1:8001"))
	if got := c.Read(sdk.ServerToClient, 2); string(got) != "ok" {
		t.Errorf("SetTarget(127.0.0.1:8001): %q", got)
	}
	c.Abort()
	c.Wait()
}
