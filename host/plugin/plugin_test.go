package plugin_test

// The WebAssembly plugin runtime, tested through a real Proxy on loopback
// with the small WAT guests of testdata/ (see testdata/Makefile).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// wasmRuntime returns a runtime logging into the returned sink; cleanup
// closes it (after the proxies, which are registered later).
func wasmRuntime(t testing.TB) (*plugin.Runtime, *tn.Logs) { return tn.PluginRuntime(t) }

func wasmGuest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".wasm")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wasmPlugin compiles testdata/<name>.wasm and makes a plugin of it.
func wasmPlugin(t testing.TB, rt *plugin.Runtime, name string, opts plugin.Options) *plugin.Plugin {
	return tn.LoadPlugin(t, rt, name, "testdata/"+name+".wasm", opts)
}

// closing returns r with an OnRelease that closes p: the owner's part, done
// once r's last connection has ended.
func closing(r host.Route, p *plugin.Plugin) host.Route {
	r.OnRelease = func() { p.Close() }
	return r
}

// readAll reads c until EOF or error and returns what came and whether the
// connection ended (EOF or reset) rather than timing out.
func wasmReadAll(c *net.TCPConn) ([]byte, bool) {
	b, err := io.ReadAll(c)
	return b, err == nil || tn.IsClosed(err)
}

func TestWasmNoopForwardsEveryByte(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "noop", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "noop", Hook: p})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := tn.Random(uint64(i), 3<<20+i)
			got := tn.Exchange(tn.Dial(t, addr), data)
			if got.Err != nil || got.N != int64(len(data)) || got.Sum != tn.Sum(data) {
				t.Errorf("conn %d: got %d bytes (err %v), want %d with the same sha256", i, got.N, got.Err, len(data))
			}
		}()
	}
	wg.Wait()
}

func TestWasmLoadErrors(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	ctx := context.Background()
	cases := []struct {
		guest string
		want  []string
	}{
		{"bad_signature", []string{`plugin "bad_signature": export "tunnel_on_data" has signature (func (param i32 i32 i32 i32) (result i32)), want (func (param i64 i32 i32 i32) (result i32))`}},
		{"wrong_version", []string{`plugin "wrong_version": guest speaks tunnel ABI version 7, this host speaks versions 1 to 2`}},
		{"missing_on_data", []string{
			`missing export "tunnel_on_data": want (func (param i64 i32 i32 i32) (result i32))`,
			`imports "env" "now": only modules "tunnel" and "wasi_snapshot_preview1" are provided`,
		}},
		{"start", []string{`plugin "start": module has a start function (a "start" section), which would run unbounded at instantiation`}},
		{"command", []string{`plugin "command": module is a WASI command (it exports "_start"), not a reactor: build it with -buildmode=c-shared`}},
		// Compile returns: its tunnel_init (2^40 calls) never runs.
		{"no_tick", []string{`plugin "no_tick": the module cannot be given its per-call time limit (module cannot be instrumented: no tunnel.input_buffer import to tick through); the host runs no plugin without one`}},
	}
	for _, c := range cases {
		_, err := rt.Compile(ctx, c.guest, wasmGuest(t, c.guest))
		if err == nil {
			t.Errorf("%s: compiled without error", c.guest)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error\n%v\ndoes not contain\n%s", c.guest, err, w)
			}
		}
	}
	if _, err := rt.Compile(ctx, "junk", []byte("not wasm")); err == nil || !strings.Contains(err.Error(), `plugin "junk": not a valid WebAssembly module`) {
		t.Errorf("junk: %v", err)
	}
	m, err := rt.Compile(ctx, "noop", wasmGuest(t, "noop"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	// A NaN log rate once passed and silenced the plugin's log.
	for _, o := range []plugin.Options{{MemoryLimit: 1000}, {CallTimeout: -time.Second}, {Instances: -1}, {Instances: plugin.MaxInstances + 1}, {LogRate: math.NaN()}, {LogRate: math.Inf(1)}} {
		if _, err := m.NewPlugin(ctx, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := m.NewPlugin(ctx, plugin.Options{MemoryLimit: 64 << 10}); err == nil || !strings.Contains(err.Error(), "initial memory is 128 KiB, more than the memory limit of 64 KiB") {
		t.Errorf("memory limit below the initial memory: %v", err)
	}
}

func TestWasmConfigAndConnInfo(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	ctx := context.Background()
	m, err := rt.Compile(ctx, "config", wasmGuest(t, "config"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)

	_, err = m.NewPlugin(ctx, plugin.Options{})
	var ce *plugin.ConfigError
	if !errors.As(err, &ce) || ce.Message != "config: the configuration must not be empty" || err.Error() != ce.Message || ce.Plugin != "config" {
		t.Fatalf("empty config: got %#v (%v), want a *ConfigError with the guest's message", err, err)
	}

	p, err := m.NewPlugin(ctx, plugin.Options{Config: []byte(`{"greeting":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "config", Hook: p})
	c := tn.Dial(t, addr)
	got := tn.Exchange(c, nil)
	_ = got
	c2 := tn.Dial(t, addr)
	c2.CloseWrite()
	b, _ := wasmReadAll(c2)
	want := fmt.Sprintf("{\"greeting\":\"hi\"}\ntest\n%s\n%s\n%s\n", c2.LocalAddr(), srv.Addr(), c2.RemoteAddr())
	if string(b) != want {
		t.Errorf("client got\n%q\nwant\n%q", b, want)
	}
	logs.Wait(t, "closed", "plugin=config", "conn=")

	// tunnel_on_open refuses: the target is never dialled, and
	// tunnel_on_close still runs for the refused connection.
	refuse, err := m.NewPlugin(ctx, plugin.Options{Name: "refuser", Config: []byte(`refuse`)})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := tn.Serve(t, tn.Echo)
	addr2, _, plogs := tn.Tunnel(t, srv2.Addr(), host.Link{Name: "refuser", Hook: refuse})
	if got := exchangeOrRefused(t, addr2, []byte("hi")); got.N != 0 {
		t.Errorf("refused connection got %d bytes", got.N)
	}
	plogs.Wait(t, "connection closed", `refused by plugin \"refuser\" (tunnel_on_open returned 1)`)
	logs.Wait(t, "closed", "plugin=refuser")
	if srv2.Accepted() != 0 {
		t.Errorf("target dialled %d times", srv2.Accepted())
	}
}

func TestWasmTrapInOpen(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			t.Parallel()
			rt, logs := wasmRuntime(t)
			p := wasmPlugin(t, rt, "trap_open", plugin.Options{FailOpen: failOpen})
			srv := tn.Serve(t, tn.Echo)
			addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "trap_open", Hook: p})
			for i := range 2 { // the second connection gets a fresh instance, which fails too
				got := exchangeOrRefused(t, addr, []byte("hello"))
				if failOpen {
					if got.Err != nil || got.N != 5 {
						t.Errorf("bypass: conn %d got %d bytes, err %v; want the echo", i, got.N, got.Err)
					}
				} else if got.N != 0 {
					t.Errorf("close: conn %d got %d bytes; want none", i, got.N)
				}
			}
			policy := map[bool]string{false: "policy=close", true: "policy=bypass"}[failOpen]
			logs.Wait(t, "plugin failed", "plugin=trap_open", "callback=tunnel_on_open", `cause="wasm error: unreachable"`, policy)
			if n := logs.Count("plugin failed"); n != 2 {
				t.Errorf("%d failures logged, want 2", n)
			}
			if failOpen && srv.Accepted() != 2 || !failOpen && srv.Accepted() != 0 {
				t.Errorf("server accepted %d connections", srv.Accepted())
			}
		})
	}
}

// An endless loop is cut off at the call timeout, and the garbage collector
// keeps working while the guest spins.
//
// A guest that blocked the collector's stop-the-world would let runtime.GC
// return only once the call is cut off. So the GC started while the guest
// spins must return before the cut-off, and the call timeout is made long
// against what a GC costs here and now (a baseline measured just before,
// under the same load and heap), so that a slow machine is not taken for a
// blocked collector.
func TestWasmTimeoutCutsOffLoopAndGCRuns(t *testing.T) {
	t.Parallel()
	var baseline time.Duration
	for range 3 {
		s := time.Now()
		runtime.GC()
		baseline = max(baseline, time.Since(s))
	}
	timeout := min(max(1500*time.Millisecond, 20*baseline), 30*time.Second)
	t.Logf("baseline GC %v: call timeout %v", baseline, timeout)
	// loop spins in a loop; recurse makes 2^40 calls and has no loop, so
	// only the check at each function's entry can cut it off.
	for _, guest := range []string{"loop", "recurse"} {
		t.Run(guest, func(t *testing.T) {
			t.Parallel()
			rt, logs := wasmRuntime(t)
			p := wasmPlugin(t, rt, guest, plugin.Options{CallTimeout: timeout})
			srv := tn.Serve(t, tn.Echo)
			addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: guest, Hook: p})
			c := tn.Dial(t, addr)
			start := time.Now()
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			logs.Wait(t, "spinning")
			gcDone := make(chan time.Duration, 1)
			go func() {
				s := time.Now()
				runtime.GC()
				gcDone <- time.Since(s)
			}()
			select {
			case d := <-gcDone:
				if logs.Count("plugin failed") != 0 {
					t.Errorf("runtime.GC only returned (after %s) once the spinning call was cut off at %s; a GC took %s before the guest spun", d, timeout, baseline)
				} else {
					t.Logf("GC while the guest spins: %v", d)
				}
			case <-time.After(timeout + tn.Timeout):
				t.Fatal("runtime.GC did not return while the guest spun")
			}
			logs.Wait(t, "plugin failed", "callback=tunnel_on_data", "call exceeded its time limit")
			// The first call comes right after the init calls, which get at
			// least 10 s: it is still cut off at its own limit.
			if d := time.Since(start); d < timeout || d > timeout+5*time.Second {
				t.Errorf("cut off after %s, want about the %s timeout", d, timeout)
			}
			b, closed := wasmReadAll(c)
			if !closed || len(b) != 0 {
				t.Errorf("client read %q (closed %v), want the connection closed with nothing", b, closed)
			}
			if plugstats.Instances(p) != 0 {
				t.Errorf("%d instances live after the failure, want 0 (replaced lazily)", plugstats.Instances(p))
			}
		})
	}
}

// TestWasmBytesTowardAClosedDirection: after the guest half-closed server
// -> client, the server's answers it FORWARDs have nowhere to go and are
// dropped, while client -> server carries on (they once closed the whole
// connection as a filter error); after the guest's close, its send returns
// StatusClosed and nothing more reaches the client, and the chunk it
// FORWARDs does not reach the server (it once did: a deny plugin that
// replied, closed and returned the default FORWARD let the command by).
func TestWasmBytesTowardAClosedDirection(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "closedsend", plugin.Options{})
	received := make(chan []byte, 4)
	srv := tn.Serve(t, func(c *net.TCPConn) {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			c.Write(buf[:n]) // echoed: answers toward the client
			if err != nil {
				break
			}
		}
		received <- all
	})
	addr, _, plogs := tn.Tunnel(t, srv.Addr(), host.Link{Name: "closedsend", Hook: p})

	t.Run("half-closed", func(t *testing.T) {
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("w1")); err != nil {
			t.Fatal(err)
		}
		if b, closed := wasmReadAll(c); !closed || string(b) != "BYE\n" {
			t.Fatalf("client read %q (closed %v), want BYE then the end", b, closed)
		}
		if _, err := c.Write([]byte("more")); err != nil {
			t.Fatalf("client -> server after the guest half-closed the other way: %v", err)
		}
		c.CloseWrite()
		if got := <-received; string(got) != "w1more" {
			t.Errorf("the server received %q, want w1more", got)
		}
		c.Close() // or the tunnel lingers, reading, for lingerTime
		plogs.Wait(t, "connection closed")
		if n := plogs.Count("filter_error"); n != 0 {
			t.Errorf("%d filter errors: forwarding toward the closed direction was fatal\n%s", n, plogs)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("c")); err != nil {
			t.Fatal(err)
		}
		if b, closed := wasmReadAll(c); !closed || len(b) != 0 {
			t.Fatalf("client read %q (closed %v), want the end and nothing sent after close", b, closed)
		}
		logs.Wait(t, "send refused")
		if got := <-received; len(got) != 0 {
			t.Errorf("the server received %q, want nothing", got)
		}
	})
	t.Run("closed then FORWARD", func(t *testing.T) {
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("fLUSHALL\r\n")); err != nil {
			t.Fatal(err)
		}
		if b, closed := wasmReadAll(c); !closed || string(b) != "BYE\n" {
			t.Fatalf("client read %q (closed %v), want BYE then the end", b, closed)
		}
		if got := <-received; len(got) != 0 {
			t.Errorf("the server received %q, want nothing: the guest closed the connection before it returned FORWARD", got)
		}
	})
	t.Run("closed then FORWARD, past the input buffer", func(t *testing.T) {
		// One chunk longer than the guest's 4096-byte input buffer: its
		// second piece was presented again after the close, and FORWARDed.
		c := tn.Dial(t, addr)
		if _, err := c.Write([]byte("f" + strings.Repeat("X", 4095) + "SECRET-AFTER-CLOSE")); err != nil {
			t.Fatal(err)
		}
		if b, closed := wasmReadAll(c); !closed || string(b) != "BYE\n" {
			t.Fatalf("client read %q (closed %v), want BYE then the end", b, closed)
		}
		if got := <-received; len(got) != 0 {
			t.Errorf("the server received %d bytes (%q…), want nothing after the guest's close", len(got), got[:min(len(got), 20)])
		}
	})
}

func TestWasmOutOfBoundsSend(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "oob_send", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "oob_send", Hook: p})
	got := tn.Exchange(tn.Dial(t, addr), []byte("hello"))
	if got.N != 0 {
		t.Errorf("client got %d bytes", got.N)
	}
	logs.Wait(t, "plugin failed", "callback=tunnel_on_data", "ABI violation: send: range [2147483632, 2147483732) is outside the guest's memory (65536 bytes)")
}

// A guest that grows its memory without end stops at the limit: with policy
// bypass it reports the page count it reached before it traps.
func TestWasmMemoryLimit(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "grow", plugin.Options{MemoryLimit: 1 << 20, FailOpen: true})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "grow", Hook: p})
	got, _ := wasmSendAndRead(t, addr, "hello")
	if len(got) != 4+5 || string(got[4:]) != "hello" {
		t.Fatalf("client got %q, want the page count and the echo", got)
	}
	if pages := binary.LittleEndian.Uint32(got); pages != 16 {
		t.Errorf("guest reached %d pages, want 16 (1 MiB)", pages)
	}
	logs.Wait(t, "plugin failed", "callback=tunnel_on_data", "unreachable", "policy=bypass")
}

// readAllAfter dials addr, writes msg, half-closes and reads to the end.
func wasmSendAndRead(t *testing.T, addr, msg string) ([]byte, bool) {
	c := tn.Dial(t, addr)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	return wasmReadAll(c)
}

func TestWasmOutputBudget(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "flood", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "flood", Hook: p})
	got, closed := wasmSendAndRead(t, addr, "x")
	if len(got) != 0 || !closed {
		t.Errorf("client got %d bytes (closed %v)", len(got), closed)
	}
	logs.Wait(t, "plugin failed", "ABI violation: send: the call produced more than its output budget of 4194304 bytes")
}

func TestWasmAnswerAndClose(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "answer", plugin.Options{})
	var mu sync.Mutex
	var serverGot []byte
	srv := tn.Serve(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		mu.Lock()
		serverGot = append(serverGot, b...)
		mu.Unlock()
	})
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "answer", Hook: p})
	c := tn.Dial(t, addr)
	if _, err := c.Write([]byte("FLUSHALL\r\n")); err != nil {
		t.Fatal(err)
	}
	got, closed := wasmReadAll(c)
	if string(got) != "DENIED\n" || !closed {
		t.Errorf("client got %q (closed %v), want %q then the end", got, closed, "DENIED\n")
	}
	srv.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(serverGot) != 0 {
		t.Errorf("server got %q", serverGot)
	}
}

func TestWasmHold(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "hold", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "hold", Hook: p, Directions: host.OnlyClientToServer})

	// A line in two pieces is presented whole, once the second arrives.
	c := tn.Dial(t, addr)
	c.Write([]byte("hel"))
	logs.Wait(t, "holding")
	c.Write([]byte("lo\n"))
	buf := make([]byte, 8)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "[hello\n]" {
		t.Fatalf("got %q (%v), want %q", buf, err, "[hello\n]")
	}
	// Held bytes at the end of the stream are forwarded as they are.
	c.Write([]byte("ab"))
	c.CloseWrite()
	rest, _ := wasmReadAll(c)
	if string(rest) != "ab" {
		t.Errorf("after the end got %q, want %q", rest, "ab")
	}

	// Holding a full buffer (16 bytes, no newline) is a violation.
	got, closed := wasmSendAndRead(t, addr, "0123456789abcdefXYZ")
	if len(got) != 0 || !closed {
		t.Errorf("overflow: client got %q (closed %v)", got, closed)
	}
	logs.Wait(t, "plugin failed", "ABI violation: tunnel_on_data returned HOLD with the input buffer full (16 bytes)")
}

// An instance shared by several connections fails as a whole: with policy
// close its connections are closed, with bypass they carry on unfiltered.
// Other instances, new connections and the listener carry on.
func TestWasmSharedInstanceFailure(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			t.Parallel()
			rt, logs := wasmRuntime(t)
			p := wasmPlugin(t, rt, "crash", plugin.Options{Instances: 1, FailOpen: failOpen})
			srv := tn.Serve(t, tn.Echo)
			addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "crash", Hook: p, Directions: host.OnlyClientToServer})
			conns := make([]*net.TCPConn, 3)
			for i := range conns {
				conns[i] = tn.Dial(t, addr)
				wasmRoundTrip(t, conns[i], "a", "+a")
			}
			if plugstats.Instances(p) != 1 {
				t.Fatalf("%d instances, want 1", plugstats.Instances(p))
			}
			if failOpen {
				wasmRoundTrip(t, conns[0], "!x", "!x")
				logs.Wait(t, "plugin failed", "policy=bypass", "conns=3")
				wasmRoundTrip(t, conns[1], "b", "b")
				wasmRoundTrip(t, conns[2], "c", "c")
			} else {
				conns[0].Write([]byte("!x"))
				for i, c := range conns {
					if b, closed := wasmReadAll(c); len(b) != 0 || !closed {
						t.Errorf("conn %d: got %q (closed %v), want it closed", i, b, closed)
					}
				}
				logs.Wait(t, "plugin failed", "policy=close", "conns=3")
			}
			// A new connection gets a fresh instance.
			wasmRoundTrip(t, tn.Dial(t, addr), "d", "+d")
			if plugstats.Instances(p) != 1 {
				t.Errorf("%d instances after the failure, want 1", plugstats.Instances(p))
			}
		})
	}
}

func wasmRoundTrip(t *testing.T, c *net.TCPConn, send, want string) {
	t.Helper()
	if _, err := c.Write([]byte(send)); err != nil {
		t.Fatalf("write: %v", err)
	}
	b := make([]byte, len(want))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != want {
		t.Fatalf("sent %q, got %q (%v), want %q", send, b, err, want)
	}
}

// Many connections share a few instances: the pool never grows past its
// size, and connections are spread over it.
func TestWasmPoolBoundsInstances(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "crash", plugin.Options{Instances: 3})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "crash", Hook: p, Directions: host.OnlyClientToServer})
	const n = 300
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = tn.Dial(t, addr)
	}
	for _, c := range conns {
		wasmRoundTrip(t, c, "x", "+x")
	}
	if got := plugstats.Instances(p); got != 3 {
		t.Errorf("%d connections use %d instances, want 3", n, got)
	}
	if s := plugstats.Runtime(rt); s.Instances != 3 || s.Plugins != 1 || s.Modules != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestWasmStdoutOnlyWhenGranted(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	var out bytes.Buffer
	p := wasmPlugin(t, rt, "stdout", plugin.Options{Stdout: &out})
	defer p.Close()
	if out.String() != "hello from the guest\n" {
		t.Errorf("stdout got %q", out.String())
	}
	q := wasmPlugin(t, rt, "stdout", plugin.Options{})
	q.Close()
}

// TestWasmLogsWhileInitialising: a guest may log from the WASI reactor's
// _initialize and from tunnel_abi_version (a C constructor, a Go init that
// prints): the lines reach the log once an instance runs them. The load's
// throwaway instance once had no output budget, and such a guest failed to
// load ("the call produced more than its output budget of 0 bytes").
func TestWasmLogsWhileInitialising(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "initlog", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "initlog", Hook: p})
	c := tn.Dial(t, addr)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := make([]byte, 4); func() error { _, err := io.ReadFull(c, got); return err }() != nil || string(got) != "ping" {
		t.Fatalf("read %q through the plugin, want ping", got)
	}
	logs.Wait(t, "hello from _initialize")
	logs.Wait(t, "hello from the handshake")
}

// A plugin closed from the OnRelease of the route that uses it is closed
// once that route is replaced and its last connection has ended, and the
// module's code is released with its last plugin.
func TestWasmReleaseOnReload(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	ctx := context.Background()
	m, err := rt.Compile(ctx, "crash", wasmGuest(t, "crash"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := m.NewPlugin(ctx, plugin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close(ctx)
	srv := tn.Serve(t, tn.Echo)
	route := closing(tn.Route("r", srv.Addr(), host.Link{Name: "crash", Hook: p, Directions: host.OnlyClientToServer}), p)
	px, _ := tn.Proxy(t, route)
	c := tn.Dial(t, px.Addr("r").String())
	wasmRoundTrip(t, c, "a", "+a")
	if err := px.Apply([]host.Route{tn.Route("r", srv.Addr())}); err != nil {
		t.Fatal(err)
	}
	if s := plugstats.Runtime(rt); s.Plugins != 1 {
		t.Fatalf("plugin closed while a connection used it: %+v", s)
	}
	wasmRoundTrip(t, c, "b", "+b")
	c.Close()
	deadline := time.Now().Add(tn.Timeout)
	for plugstats.Runtime(rt) != (plugstats.Stats{}) {
		if time.Now().After(deadline) {
			t.Fatalf("still held after the last connection: %+v", plugstats.Runtime(rt))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exchangeOrRefused is tn.Exchange on a new connection; a connection reset
// while dialling (the tunnel refused it at once) counts as nothing received.
func exchangeOrRefused(t *testing.T, addr string, out []byte) tn.Received {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, tn.Timeout)
	if err != nil {
		if tn.IsClosed(err) {
			return tn.Received{Err: err}
		}
		t.Fatalf("dial: %v", err)
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(tn.Timeout))
	return tn.Exchange(tc, out)
}

// Host functions answer with the documented statuses outside a connection,
// with bad arguments, toward a spliced direction and after a half-close.
func TestWasmStatuses(t *testing.T) {
	t.Parallel()
	rt, logs := wasmRuntime(t)
	p := wasmPlugin(t, rt, "statuses", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "statuses", Hook: p, Directions: host.OnlyClientToServer})
	c := tn.Dial(t, addr)
	c.Write([]byte("x"))
	logs.Wait(t, "msg=aaaaaccadbhc", "plugin=statuses")
	// close_write(0) half-closed the server side: the echo ends.
	if b, closed := wasmReadAll(c); len(b) != 0 || !closed {
		t.Errorf("client got %q (closed %v)", b, closed)
	}
}

// Reloading a plugin many times leaves nothing behind: every module,
// plugin and instance is released (goroutines are checked by TestMain),
// and the Go heap does not grow with the reloads.
//
// Not parallel: the heap is the process's, so it is measured while no
// other test runs.
func TestWasmNoGrowthOverReloads(t *testing.T) {
	rt, _ := wasmRuntime(t)
	ctx := context.Background()
	srv := tn.Serve(t, tn.Echo)
	px, _ := tn.Proxy(t, tn.Route("r", srv.Addr()))
	bin := wasmGuest(t, "crash")
	var heap [2]uint64
	for i := range 100 {
		m, err := rt.Compile(ctx, "crash", bin)
		if err != nil {
			t.Fatal(err)
		}
		p, err := m.NewPlugin(ctx, plugin.Options{Instances: 2})
		m.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := px.Apply([]host.Route{closing(tn.Route("r", srv.Addr(), host.Link{Name: "crash", Hook: p, Directions: host.OnlyClientToServer}), p)}); err != nil {
			t.Fatal(err)
		}
		c := tn.Dial(t, px.Addr("r").String())
		wasmRoundTrip(t, c, "a", "+a")
		c.Close()
		if i == 9 || i == 99 {
			// Let the previous generation be released (and its plugin
			// closed), then measure.
			deadline := time.Now().Add(tn.Timeout)
			for plugstats.Runtime(rt).Plugins > 1 {
				if time.Now().After(deadline) {
					t.Fatalf("reload %d: %+v", i, plugstats.Runtime(rt))
				}
				time.Sleep(time.Millisecond)
			}
			runtime.GC()
			runtime.GC() // and what finalizers of the first freed
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap[i/99] = ms.HeapAlloc
		}
	}
	if err := px.Apply([]host.Route{tn.Route("r", srv.Addr())}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(tn.Timeout)
	for plugstats.Runtime(rt) != (plugstats.Stats{}) {
		if time.Now().After(deadline) {
			t.Fatalf("after 100 reloads the runtime still holds %+v", plugstats.Runtime(rt))
		}
		time.Sleep(time.Millisecond)
	}
	// Measured alone (with and without -race): the heap after 100 reloads
	// is within -30 … +150 KiB of the heap after 10, about 0.5 to 1 MiB.
	// A leak of only the 64 KiB linear memory of each reload's instance
	// would add 90 × 64 KiB = 5.6 MiB; 4 MiB (about 45 KiB per reload)
	// leaves room for noise and fails such a leak.
	const maxGrowth = 4 << 20
	t.Logf("heap after 10 reloads %d KiB, after 100 %d KiB", heap[0]>>10, heap[1]>>10)
	if heap[1] > heap[0]+maxGrowth {
		t.Errorf("heap grew by %d KiB over 90 reloads (from %d KiB to %d KiB), want at most %d KiB", (heap[1]-heap[0])>>10, heap[0]>>10, heap[1]>>10, maxGrowth>>10)
	}
}

// TestGoGuestMemoryDoc checks what Options.MemoryLimit's doc and
// tunnel.hcl say a standard-Go guest needs ("about N MiB"): the built-in
// Go plugins that allocate nothing per chunk start and pass chunks both
// ways at N MiB, and do not start at N-0.5 MiB, so the figure is neither
// too small nor far too large.
func TestGoGuestMemoryDoc(t *testing.T) {
	about := regexp.MustCompile(`standard-Go guest needs about ([0-9.]+) MiB`)
	var need string
	for _, file := range []string{"plugin.go", "../../tunnel.hcl"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := about.FindSubmatch(src)
		if m == nil {
			t.Fatalf("%s does not say %q", file, about)
		}
		if need != "" && string(m[1]) != need {
			t.Fatalf("%s says %s MiB, plugin.go %s MiB", file, m[1], need)
		}
		need = string(m[1])
	}
	mib, err := strconv.ParseFloat(need, 64)
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(mib * (1 << 20))
	rt, err := plugin.NewRuntime(context.Background(), plugin.RuntimeOptions{CacheDir: plugintest.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) }) // after the parallel subtests
	for _, p := range []struct{ name, config string }{
		{"noop", ``},
		{"replace", `{"from":"needle","to":"pin"}`},
		{"deny", `{"pattern":"needle","reply":"no"}`},
	} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dir := "../../plugins/" + p.name
			start := plugintest.WasmWith(t, dir, plugintest.Options{Plugin: plugin.Options{MemoryLimit: limit}})
			pl := sdktest.MustStart(t, start, sdktest.Options{Config: p.config})
			c := pl.Open()
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			for _, dir := range []sdk.Direction{sdk.ClientToServer, sdk.ServerToClient} {
				c.Write(dir, chunk)
				c.End(dir)
				if got := c.ReadAll(dir); !bytes.Equal(got, chunk) {
					t.Errorf("%s: %d bytes came through, want %d", dir, len(got), len(chunk))
				}
			}
			// plugintest compiled the module into the shared cache: this
			// compile is a cache hit.
			m, err := rt.Compile(context.Background(), p.name, plugintest.Build(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			pl2, err := m.NewPlugin(context.Background(), plugin.Options{MemoryLimit: limit, Config: []byte(p.config)})
			if err != nil {
				t.Fatal(err)
			}
			pl2.Close()
			below := limit - 512<<10
			if pl, err := m.NewPlugin(context.Background(), plugin.Options{MemoryLimit: below, Config: []byte(p.config)}); err == nil {
				pl.Close()
				t.Errorf("%s starts with %d KiB: the doc's %s MiB is too high", p.name, below>>10, need)
			}
		})
	}
}
