// Package sdktest runs a plugin written with package sdk inside plain
// `go test`, natively, against an emulator of the tunnel host that follows
// the ABI (sdk/ABI.md, versions 1 and 2) call for call: the input buffer,
// chunks split to its size, Hold, end of stream, half-close, replies
// toward the sender, close and logs, and version 2's clock and timers (on
// a clock the test moves with [Plugin.Advance]), late dial, paused reads,
// tags, shared state and metrics.
//
// The test API is a pair of interfaces, [Plugin] and [Conn], so that the same
// test can also run the compiled .wasm through the real host runtime:
// package host/plugintest implements them over a real tunnel. A plugin's
// tests are written once against a [Starter]:
//
//	func testUpper(t *testing.T, start sdktest.Starter) {
//		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"greeting":"hi"}`})
//		c := p.Open()
//		c.Write(sdk.ClientToServer, []byte("hello"))
//		c.End(sdk.ClientToServer)
//		if got := c.ReadAll(sdk.ClientToServer); string(got) != "HELLO" { ... }
//	}
//
//	func TestNative(t *testing.T) { testUpper(t, sdktest.Native) }
//
// The plugin under test is the one its package main registers with
// sdk.Register from func init, so tests live in the plugin's package main.
//
// The shared state and metrics of ABI v2 (sdk.StateGet, sdk.NewCounter,
// ...) are emulated with the host's rules and default bounds; each started
// Plugin has a store of its own, shared by its connections. [State] and
// [Metric] read them, natively and under host/plugintest alike.
package sdktest

import (
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/sdk"
)

// Options configure a plugin instance under test.
type Options struct {
	// Config is the plugin's configuration, JSON as the host hands it over
	// (empty for none).
	Config string
	// Route is the route name connections report; "test" if empty.
	Route string
	// LateDial makes the route wait for the plugin to choose the target
	// (dial = "plugin"): nothing reaches the server until the plugin calls
	// Conn.SetTarget.
	LateDial bool
}

// Server is replaced, in Options.Config, by the address of the test's
// server: [EmulatedTarget] natively, the real server's under plugintest. A
// plugin that chooses targets (LateDial) is configured with it so that both
// runs can dial what it chooses.
const Server = "{{server}}"

// A Starter starts a plugin instance: it runs the plugin's initialisation
// with opts.Config and returns the error the plugin rejects it with, if any
// (its text is the plugin's message, as the user would read it). Everything
// started is stopped by t.Cleanup.
type Starter func(t testing.TB, opts Options) (Plugin, error)

// MustStart starts a plugin and fails the test if its configuration is
// rejected.
func MustStart(t testing.TB, start Starter, opts Options) Plugin {
	t.Helper()
	p, err := start(t, opts)
	if err != nil {
		t.Fatalf("starting plugin with config %q: %v", opts.Config, err)
	}
	return p
}

// Plugin is a started plugin instance under test.
type Plugin interface {
	// Open opens a new connection through the plugin. A connection the
	// plugin refuses is returned closed: both ReadAll calls return nothing.
	Open() Conn
	// Logs returns the messages the plugin logged so far.
	Logs() []Log
	// Stdout returns what the plugin wrote to its standard output so far.
	Stdout() []byte
	// Advance moves the plugin's clock (sdk.Now) forward by d and fires
	// the timers that come due, in order, and returns once they have
	// fired, so that what the test does next (an End) comes after them.
	// The clock moves only when the test says, so timer tests are exact
	// and never sleep. Bytes a timer sends are then read with Conn.Read,
	// which waits for them. Natively, each OnTimer reads sdk.Now at its
	// own time and a timer it arms fires too if due within d; through a
	// real tunnel (host/plugintest) the clock is already at the end of
	// the Advance when the timers fire, and what they set off (a resumed
	// read, a timer armed then) follows in real time. A test that relies
	// on a timer's time or on a chain of timers advances in steps no
	// longer than their delays.
	Advance(d time.Duration)
}

// Conn is one connection through a plugin under test. Methods fail the test
// (t.Fatal) on misuse or when expected bytes do not come, so they must be
// called from the test's goroutine.
type Conn interface {
	// ID returns the connection id the plugin sees.
	ID() uint64
	// Write sends b from the source of dir (the client for ClientToServer)
	// as one chunk: the plugin sees it in one OnData call unless it is
	// larger than the input buffer or bytes are held. It returns once the
	// plugin has been shown the bytes (or never will be: the connection is
	// closed or closing), so an Advance that follows moves the clock after
	// OnData ran. Writing to a closed connection does nothing.
	// While the plugin pauses the reads of dir's source (Conn.PauseRead)
	// the bytes wait, as they would in the socket, and Write returns at
	// once (through a real tunnel, once they are in the socket: a Write
	// larger than the socket holds waits for the resume, as a client
	// would); the plugin is shown them once it resumes the reads. Write of
	// no bytes only waits, as any Write does: after an Advance whose timer
	// resumed the reads, it returns once the plugin has been shown what
	// waited (or paused again), so that the next Advance moves the clock
	// after that.
	Write(dir sdk.Direction, b []byte)
	// End half-closes the source of dir: the plugin sees end of stream.
	// Like Write, it returns once the plugin has been shown the end (or
	// the connection is closed), so an Advance that follows moves the
	// clock after the OnData that carries the end. While the plugin
	// pauses the reads of dir's source, the end waits behind the bytes, as
	// Write's do.
	End(dir sdk.Direction)
	// Read returns the next n bytes that arrived at the destination of dir
	// (the server for ClientToServer; for ServerToClient the client, which
	// includes replies the plugin sent toward the client), and fails the
	// test if they do not arrive.
	Read(dir sdk.Direction, n int) []byte
	// ReadAll returns every remaining byte that arrives at the destination
	// of dir up to its end of stream, and fails the test if that stream is
	// not ended (by End, the plugin's CloseWrite or Close, or Abort).
	ReadAll(dir sdk.Direction) []byte
	// Abort drops the connection from outside, as a reset would; the plugin
	// sees OnClose.
	Abort()
	// Wait returns once the connection is gone and the plugin's OnClose has
	// returned, so that what OnClose did (logs) can be checked. It fails the
	// test if the connection is still open: end both directions, or let the
	// plugin close it, or Abort, first.
	Wait()
	// Target returns the address the connection was dialled to: with
	// Options.LateDial, the one the plugin chose ("" while none is),
	// else the test's server.
	Target() string
	// Tag returns the value of a connection tag as the connection's close
	// log line shows it, and whether it is set. Call it after Wait.
	Tag(key string) (string, bool)
	// ReadPaused reports whether the plugin has paused the reads of dir's
	// source (Conn.PauseRead) and not resumed them. It is exact after
	// Open, Write and End; through a real tunnel, a resume from a timer
	// that an Advance fires is seen only once that callback has returned
	// (after the bytes it sent may have arrived).
	ReadPaused(dir sdk.Direction) bool
}

// Finish ends an open connection the ordinary way: both directions end,
// what is still on its way is read and dropped, and Finish returns once
// the connection is gone (Wait).
func Finish(c Conn) {
	c.End(sdk.ClientToServer)
	c.End(sdk.ServerToClient)
	c.ReadAll(sdk.ClientToServer)
	c.ReadAll(sdk.ServerToClient)
	c.Wait()
}

// Log is one message a plugin logged.
type Log struct {
	Level sdk.Level
	Msg   string
}
