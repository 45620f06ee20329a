package plugin_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// readN reads exactly n bytes from c.
func readN(t *testing.T, c io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v (got %q)", n, err, b)
	}
	return string(b)
}

// An ABI v2 guest delays a chunk with set_timer/tunnel_on_timer, sees now()
// move by the delay, and reads back the tag it set, which the close log
// line shows.
func TestV2TimerNowTags(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "v2_timer", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, logs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "v2_timer", Hook: p})
	c := tn.Dial(t, addr)
	start := time.Now()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The echo server returns what the timer sent: the tag's value, "+"
	// (now() advanced by at least the 20 ms delay), the chunk.
	if got := readN(t, c, 9); got != "yes+hello" {
		t.Fatalf("echoed %q, want %q", got, "yes+hello")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("the delayed chunk came back after %v, before the 20 ms timer", d)
	}
	c.Close()
	logs.Wait(t, "connection closed", "tag.seen=yes")
}

// The v1 contract is unchanged beside v2: a v1 guest that exports a
// (trapping) function named tunnel_on_timer forwards as before, and the
// export is never called; the v2 guest on the same bytes delays them.
func TestV1BesideV2(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	for _, name := range []string{"v1_timer_export", "v2_timer"} {
		p := wasmPlugin(t, rt, name, plugin.Options{})
		srv := tn.Serve(t, tn.Echo)
		addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: name, Hook: p})
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"v1_timer_export": "hello", "v2_timer": "yes+hello"}[name]
		if got := readN(t, c, len(want)); got != want {
			t.Errorf("%s: echoed %q, want %q", name, got, want)
		}
		c.Close()
	}
	if n := logs.Count("plugin failed"); n != 0 {
		t.Errorf("%d plugin failures:\n%s", n, logs)
	}
}

func TestV2LoadErrors(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	ctx := context.Background()
	for _, c := range []struct{ guest, want string }{
		{"v1_imports_v2", `plugin "v1_imports_v2": imports "tunnel" "now", which is ABI v2, but tunnel_abi_version returned 1`},
		{"v2_no_on_timer", `plugin "v2_no_on_timer": imports "tunnel" "set_timer" but does not export "tunnel_on_timer": want (func (export "tunnel_on_timer") (param i64) (result i32))`},
		// Exported with a wrong signature: that is the error, not a
		// missing export as well.
		{"v2_bad_on_timer", `plugin "v2_bad_on_timer": export "tunnel_on_timer" has signature (func (param i64)), want (func (param i64) (result i32))`},
	} {
		_, err := rt.Load(ctx, "testdata/"+c.guest+".wasm", plugin.Options{Name: c.guest})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain\n%s", c.guest, err, c.want)
		}
		if err != nil && c.guest == "v2_bad_on_timer" && strings.Contains(err.Error(), "does not export") {
			t.Errorf("%s: error %v also says the export is missing", c.guest, err)
		}
	}
}

// Ranges outside the guest's memory given to the v2 functions trap the call
// (an ABI violation in the log), they never panic the host.
func TestV2OutOfBounds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ first, want string }{
		{"t", "ABI violation: set_tag: range [65530, 65630) is outside the guest's memory (65536 bytes)"},
		{"g", "ABI violation: get_tag: range [4294967280, 4294967312) is outside the guest's memory (65536 bytes)"},
		{"b", "ABI violation: get_tag: range [65536, 65537) is outside the guest's memory"},
		{"s", "ABI violation: set_target: range [65000, 66000) is outside the guest's memory (65536 bytes)"},
	} {
		rt, logs := wasmRuntime(t)
		p := wasmPlugin(t, rt, "v2_oob", plugin.Options{})
		srv := tn.Serve(t, tn.Echo)
		addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "v2_oob", Hook: p})
		got := tn.Exchange(tn.Dial(t, addr), []byte(c.first))
		if got.N != 0 {
			t.Errorf("%s: client got %d bytes", c.first, got.N)
		}
		logs.Wait(t, "plugin failed", "callback=tunnel_on_data", c.want)
	}
}

// set_target chooses the target of a late-dial route: the first valid
// address wins, a second call is StatusAlreadySet, a bad one
// StatusBadArgument; on a route with a fixed target it is StatusNoLateDial.
func TestV2SetTarget(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	srv := tn.Serve(t, tn.Echo)
	late := tn.Route("late", "", host.Link{Name: "v2_target", Hook: wasmPlugin(t, rt, "v2_target", plugin.Options{})})
	late.LateDial = true
	fixed := tn.Route("fixed", srv.Addr(), host.Link{Name: "v2_target", Hook: wasmPlugin(t, rt, "v2_target", plugin.Options{})})
	px, _ := tn.Proxy(t, late, fixed)

	c := tn.Dial(t, px.Addr("late").String())
	for _, step := range []struct{ send, want string }{
		{"nope", "1"},        // not host:port
		{srv.Addr(), "0"},    // chosen: the tunnel dials it
		{"127.0.0.1:1", "6"}, // already chosen
	} {
		if _, err := c.Write([]byte(step.send)); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, c, 1); got != step.want {
			t.Fatalf("set_target(%q): status digit %q, want %q", step.send, got, step.want)
		}
	}
	srv.WaitAccepted(t, 1)

	c2 := tn.Dial(t, px.Addr("fixed").String())
	if _, err := c2.Write([]byte(srv.Addr())); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c2, 1); got != "5" {
		t.Fatalf("set_target on a fixed route: status digit %q, want 5 (StatusNoLateDial)", got)
	}
}

// defer_end keeps the client's half-close behind the bytes a timer sends
// after it: the server reads every byte, then EOF, and answers; the guest
// traps (a "plugin failed" line) if defer_end is not refused where the ABI
// says it is.
func TestV2DeferEnd(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "v2_defer", plugin.Options{})
	serverGot := make(chan tn.Received, 1)
	srv := tn.Serve(t, func(c *net.TCPConn) {
		got := tn.ReadSum(c) // to EOF: the half-close must come after the bytes
		serverGot <- got
		c.Write([]byte("done"))
		c.CloseWrite()
	})
	addr, _, clogs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "v2_defer", Hook: p})
	c := tn.Dial(t, addr)
	payload := tn.Random(3, 20<<10)
	start := time.Now()
	got := tn.Exchange(c, payload)
	if got.Err != nil || got.N != 4 {
		t.Fatalf("client got %d bytes, %v; want the server's 4-byte answer\n%s", got.N, got.Err, logs)
	}
	if s := <-serverGot; s.N != int64(len(payload)) || s.Sum != tn.Sum(payload) {
		t.Fatalf("server got %d bytes (%v), want all %d before the half-close", s.N, s.Err, len(payload))
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("the exchange took %v, less than the 20 ms delay", d)
	}
	clogs.Wait(t, "connection closed", "bytes_to_server=20480")
	if n := logs.Count("plugin failed"); n != 0 {
		t.Errorf("%d plugin failures:\n%s", n, logs)
	}
}

// A connection whose reads the guest paused, pinned to a shared instance
// that then fails on another connection under policy bypass, resumes at
// once: it goes on without the plugin, and nothing else would resume it
// (no timer, no bytes from a source nobody reads). The guest also checks
// pause_read's statuses.
func TestWasmPauseResumedWhenInstanceFails(t *testing.T) {
	t.Parallel()
	b := pausedWhenInstanceFails(t, true)
	got := make([]byte, len("queued"))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "queued" {
		t.Fatalf("the paused connection got %q, %v after its instance failed; want its queued bytes echoed", got, err)
	}
}

// pausedWhenInstanceFails returns a connection whose reads v2_pause paused
// with "queued" waiting in its socket, once the instance it shares with a
// second connection has failed on that one (the guest spins), under
// policy bypass (failOpen) or close.
func pausedWhenInstanceFails(t *testing.T, failOpen bool) *net.TCPConn {
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "v2_pause", plugin.Options{Instances: 1, CallTimeout: 100 * time.Millisecond, FailOpen: failOpen})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "pause", Hook: p})
	b := tn.Dial(t, addr)
	tn.EchoOnce(t, b, "p") // forwarded; b's reads are paused now
	if _, err := b.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	a := tn.Dial(t, addr)
	if _, err := a.Write([]byte("s")); err != nil { // the shared instance spins and fails
		t.Fatal(err)
	}
	policy := "policy=close"
	if failOpen {
		policy = "policy=bypass"
	}
	logs.Wait(t, "plugin failed", policy, "conns=2")
	return b
}

// Under policy close, a connection whose reads the guest paused, pinned
// to a shared instance that fails on another connection, is closed at
// once (reset) with the others: the abort reaches it although nobody
// reads its source.
func TestWasmPauseClosedWhenInstanceFails(t *testing.T) {
	t.Parallel()
	b := pausedWhenInstanceFails(t, false)
	if got, err := io.ReadAll(b); len(got) != 0 || !tn.IsClosed(err) {
		t.Fatalf("the paused connection read %q, %v after its instance failed; want it reset", got, err)
	}
}

// A connection whose reads the guest paused is closed at once when the
// plugin is closed under policy close: its next call fails, and Close
// resumes it so that it makes one, instead of waiting for bytes or a
// timer that will not come.
func TestWasmPauseEndsWhenPluginCloses(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "v2_pause", plugin.Options{Instances: 1})
	srv := tn.Serve(t, tn.Echo)
	addr, _, logs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "pause", Hook: p})
	c := tn.Dial(t, addr)
	tn.EchoOnce(t, c, "p") // forwarded; the reads are paused now
	if _, err := c.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got, err := io.ReadAll(c); len(got) != 0 || err != nil && !tn.IsClosed(err) {
		t.Fatalf("after the plugin closed: read %q, %v; want the connection closed", got, err)
	}
	logs.Wait(t, "connection closed", "plugin closed")
}
