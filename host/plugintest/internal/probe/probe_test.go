package main

import (
	"context"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	hostplugin "github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

const (
	c2s = sdk.ClientToServer
	s2c = sdk.ServerToClient
)

func TestNative(t *testing.T) { testSDK(t, sdktest.Native) }

func TestWasm(t *testing.T) { testSDK(t, plugintest.Wasm(t, ".")) }

// TestWasmPanic: a panicking Go guest kills its instance; the SDK puts the
// panic's message in the tunnel's log, the host closes the connection
// (default policy) and the next connection gets a fresh instance.
func TestWasmPanic(t *testing.T) {
	p := sdktest.MustStart(t, plugintest.Wasm(t, "."), sdktest.Options{})
	c := p.Open()
	c.Write(c2s, []byte("!panic"))
	if got := c.ReadAll(s2c); len(got) != 0 {
		t.Fatalf("client got %q", got)
	}
	c.Wait()
	logs := p.Logs()
	if len(logs) < 3 || logs[1] != (sdktest.Log{Level: sdk.LevelError, Msg: "sdk: panic in OnData: probe: boom"}) || logs[2].Msg != "plugin failed callback=tunnel_on_data cause=wasm error: unreachable" {
		t.Fatalf("logs %q", logs)
	}
	c = p.Open()
	c.Write(c2s, []byte("!reply alive"))
	if got := c.Read(s2c, 5); string(got) != "alive" {
		t.Fatalf("next connection got %q", got)
	}
}

// msgs returns the messages of logs at level Info and above, whose order
// is the plugin's.
func msgs(logs []sdktest.Log) []string {
	var out []string
	for _, l := range logs {
		out = append(out, l.Msg)
	}
	return out
}

func expectLogs(t *testing.T, p sdktest.Plugin, want ...string) {
	t.Helper()
	if got := msgs(p.Logs()); !slices.Equal(got, want) {
		t.Fatalf("logs:\n got %q\nwant %q", got, want)
	}
}

func testSDK(t *testing.T, start sdktest.Starter) {
	// End, like Write, returns once the plugin has been shown the end, so
	// that a test's Advance after it counts from after the plugin's OnData
	// (a delay armed at the end, like toxics' slow_close, would otherwise
	// now and then be armed after the Advance, and never fire).
	t.Run("End returns once the plugin saw the end", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"log_end": true}`})
		c := p.Open()
		c.Write(s2c, []byte("bye"))
		c.End(s2c)
		expectLogs(t, p, "probe: configured", "end server -> client")
		c.End(c2s)
		// Both streams ended: "closed" may follow at once.
		if got := msgs(p.Logs()); len(got) < 3 || got[2] != "end client -> server" {
			t.Fatalf("logs after End(%s): %q", c2s, got)
		}
		if got := c.ReadAll(s2c); string(got) != "bye" {
			t.Fatalf("client got %q", got)
		}
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q", got)
		}
		c.Wait()
	})
	// A plugin that half-closed a direction itself is still shown its
	// end; End waits for that too (not only for the stream to end).
	t.Run("End after the plugin half-closed the direction", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"log_end": true}`})
		c := p.Open()
		c.Write(c2s, []byte("!closewrite"))
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q", got)
		}
		c.End(c2s)
		got := msgs(p.Logs())
		if len(got) == 0 || got[len(got)-1] != "end client -> server" {
			t.Fatalf("logs after End(%s): %q, want the end last", c2s, got)
		}
		c.End(s2c)
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("greet, info, reply, upper, close", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"greet":"hello\n"}`, Route: "r1"})
		c := p.Open()
		if got := c.Read(s2c, 6); string(got) != "hello\n" {
			t.Fatalf("greeting %q", got)
		}
		c.Write(c2s, []byte("!info"))
		line := string(c.Read(s2c, 1)) // the length depends on the addresses
		for line[len(line)-1] != '\n' {
			line += string(c.Read(s2c, 1))
		}
		m := regexp.MustCompile(`^route=r1 id=(\d+) client=(\S+) target=(\S+) listen=(\S+)\n$`).FindStringSubmatch(line)
		if m == nil || m[1] != "1" {
			t.Fatalf("info line %q", line)
		}
		for _, a := range m[2:] {
			if _, err := net.ResolveTCPAddr("tcp", a); err != nil {
				t.Errorf("info address %q: %v", a, err)
			}
		}
		c.Write(c2s, []byte("!reply pong"))
		if got := c.Read(s2c, 4); string(got) != "pong" {
			t.Fatalf("reply %q", got)
		}
		c.Write(c2s, []byte("plain"))
		c.Write(c2s, []byte("!upper shout"))
		if got := c.Read(c2s, 10); string(got) != "plainSHOUT" {
			t.Fatalf("server got %q", got)
		}
		c.Write(c2s, []byte("!close"))
		if got := c.ReadAll(s2c); string(got) != "bye\n" {
			t.Fatalf("client got %q", got)
		}
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q", got)
		}
		// Lost, not an error, and not waited for: the plugin closed the
		// connection, so it will not be shown these bytes, which the
		// tunnel reads and drops for up to 2 s (its lingering close).
		start := time.Now()
		c.Write(c2s, []byte("after close"))
		if d := time.Since(start); d > time.Second {
			t.Errorf("Write after the plugin's close took %s, want it to return at once", d)
		}
		c.Wait()
		expectLogs(t, p, "probe: configured", "info: ok", "reply: ok", "upper: ok", "bye: ok", "close: ok",
			"closed #1", "send in OnClose: "+sdk.ErrNotAllowed.Error())
		if lv := p.Logs()[0].Level; lv != sdk.LevelDebug {
			t.Fatalf("level of the first log %v", lv)
		}
	})
	t.Run("hold until a dot, and at the end", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		c := p.Open()
		c.Write(c2s, []byte("!hold a"))
		c.Write(c2s, []byte("b"))
		c.Write(c2s, []byte("c."))
		c.Write(c2s, []byte("!reply r")) // a command after the held bytes came through
		if got := c.Read(s2c, 1); string(got) != "r" {
			t.Fatalf("reply %q", got)
		}
		if got := c.Read(c2s, 10); string(got) != "!hold abc." {
			t.Fatalf("server got %q", got)
		}
		c.Write(c2s, []byte("!hold no dot"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "!hold no dot" {
			t.Fatalf("held bytes at the end: server got %q", got)
		}
	})
	t.Run("half-close from the plugin, then the rest of the connection", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		c := p.Open()
		c.Write(c2s, []byte("before"))
		c.Write(c2s, []byte("!closewrite"))
		if got := c.ReadAll(c2s); string(got) != "before" {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("still open"))
		if got := c.Read(s2c, 10); string(got) != "still open" {
			t.Fatalf("client got %q", got)
		}
		c.End(s2c)
		c.ReadAll(s2c)
		c.End(c2s)
		c.Wait()
		// A second half-close of the same direction is no error: the
		// host's close_write returns StatusOK (sdk/ABI.md lists no
		// StatusClosed for it).
		expectLogs(t, p, "probe: configured", "closewrite: ok", "send after closewrite: "+sdk.ErrClosed.Error(),
			"closewrite again: ok", "closed #1", "send in OnClose: "+sdk.ErrNotAllowed.Error())
	})
	// A timer armed math.MaxInt64 ns ahead, once the clock is past its
	// origin, is at the end of time: it must not wrap around to one that
	// is due at once (the host saturates it). Another connection's timer,
	// armed after it and due, fires: by then the first one would have.
	t.Run("a timer at the end of time never fires", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		a, b := p.Open(), p.Open()
		p.Advance(time.Second)
		a.Write(c2s, []byte("!never"))
		b.Write(c2s, []byte("!soon"))
		p.Advance(time.Hour)
		if got := b.Read(s2c, 6); string(got) != "timer\n" {
			t.Fatalf("the due timer replied %q", got)
		}
		a.Write(c2s, []byte("!reply done"))
		a.End(c2s)
		a.End(s2c)
		if got := a.ReadAll(s2c); string(got) != "done" {
			t.Fatalf("client got %q, want %q (no timer reply)", got, "done")
		}
		a.ReadAll(c2s)
		a.Wait()
		b.Abort()
		b.Wait()
		if got := msgs(p.Logs()); slices.Index(got, "never: ok") < 0 || slices.Index(got, "timer: ok") < 0 ||
			len(slices.DeleteFunc(got, func(m string) bool { return m != "timer: ok" })) != 1 {
			t.Fatalf("logs %q, want one timer: ok", msgs(p.Logs()))
		}
	})
	// Advance returns once the timers due have fired: the timer's reply
	// is there when the connection ends right after.
	t.Run("Advance fires the timers due before it returns", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		c := p.Open()
		c.Write(c2s, []byte("!at"))
		p.Advance(50 * time.Millisecond)
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(s2c); string(got) != "timer after 50ms\n" {
			t.Fatalf("client got %q, want the timer's reply", got)
		}
		c.ReadAll(c2s)
		c.Wait()
	})
	// Held bytes are out of a timer's reach (sdk/ABI.md, "Holding and
	// time"): the timer cannot pass them on, and its half-close of their
	// direction means they never reach the server.
	t.Run("held bytes and a timer's half-close", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		c := p.Open()
		c.Write(c2s, []byte("!later"))
		p.Advance(time.Second)
		if got := c.Read(s2c, 6); string(got) != "timer\n" {
			t.Fatalf("timer reply %q", got)
		}
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q, want nothing (the bytes were held)", got)
		}
		sdktest.Finish(c)
		// The end of the client's stream presents the held bytes once
		// more (a second "later"), and passes on nothing.
		expectLogs(t, p, "probe: configured", "later: ok", "closewrite: ok", "timer: ok", "later: ok",
			"closed #1", "send in OnClose: "+sdk.ErrNotAllowed.Error())
	})
	t.Run("errors: bad direction, another connection", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		a := p.Open()
		b := p.Open()
		if a.ID() != 1 || b.ID() != 2 {
			t.Fatalf("ids %d %d", a.ID(), b.ID())
		}
		a.Write(c2s, []byte("!badarg"))
		a.Write(c2s, []byte("!other"))
		a.Write(c2s, []byte("!log"))
		a.Write(c2s, []byte("!stdout out"))
		a.Write(c2s, []byte("!reply done"))
		a.Read(s2c, 4)
		b.Abort()
		b.Wait()
		a.Abort()
		a.Wait()
		want := []sdktest.Log{
			{Level: sdk.LevelDebug, Msg: "probe: configured"},
			{Level: sdk.LevelInfo, Msg: "badarg: " + sdk.ErrBadArgument.Error()},
			{Level: sdk.LevelInfo, Msg: "other: " + sdk.ErrNotAllowed.Error()},
			{Level: sdk.LevelDebug, Msg: "debug line"},
			{Level: sdk.LevelInfo, Msg: "info line"},
			{Level: sdk.LevelWarn, Msg: "warn line 3"},
			{Level: sdk.LevelError, Msg: "error line"},
			// Levels between or beyond the four: the highest of them not
			// above, and debug below debug (sdk/ABI.md, log).
			{Level: sdk.LevelWarn, Msg: "level 6 line"},
			{Level: sdk.LevelDebug, Msg: "level -9 line"},
			{Level: sdk.LevelInfo, Msg: "stdout: ok"},
			{Level: sdk.LevelInfo, Msg: "reply: ok"},
			{Level: sdk.LevelInfo, Msg: "closed #2"},
			{Level: sdk.LevelInfo, Msg: "send in OnClose: " + sdk.ErrNotAllowed.Error()},
			{Level: sdk.LevelInfo, Msg: "closed #1"},
			{Level: sdk.LevelInfo, Msg: "send in OnClose: " + sdk.ErrNotAllowed.Error()},
		}
		if got := p.Logs(); !slices.Equal(got, want) {
			t.Fatalf("logs:\n got %q\nwant %q", got, want)
		}
		if got := string(p.Stdout()); got != "out" {
			t.Fatalf("stdout %q", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"refuse":true,"greet":"never"}`})
		c := p.Open()
		c.Write(c2s, []byte("lost"))
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q", got)
		}
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q", got)
		}
		c.Wait()
		expectLogs(t, p, "probe: configured", "connection refused: probe refuses everyone")
	})
	t.Run("config errors", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{`{"greet":1}`, `config: "greet" must be a string, got a JSON number`},
			{`{"refuse":"yes"}`, `config: "refuse" must be true or false, got a JSON string`},
			{`{"greet":"a"} {}`, `config: unexpected data after the JSON object`},
			{`{"greet":`, `config: invalid JSON: it ends too early`},
			{`[1]`, `config: must be an object, got a JSON array`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWasmFactoryPanic: a panic in the factory traps tunnel_init; the load
// error quotes the panic the Go runtime wrote to the guest's stderr (not
// granted), where it said only "wasm error: unreachable".
func TestWasmFactoryPanic(t *testing.T) {
	ctx := context.Background()
	rt, err := hostplugin.NewRuntime(ctx, hostplugin.RuntimeOptions{CacheDir: plugintest.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	m, err := rt.Compile(ctx, "probe", plugintest.Build(t, "."))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	p, err := m.NewPlugin(ctx, hostplugin.Options{Config: []byte(`{"panic": true}`), Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		p.Close()
	}
	want := `tunnel_init: wasm error: unreachable`
	quote := `(the guest wrote to its stderr: "panic: probe: boom in the factory`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), quote) {
		t.Fatalf("start: %v; want an error with %q and %q", err, want, quote)
	}
}
