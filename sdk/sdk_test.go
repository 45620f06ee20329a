package sdk

import (
	"errors"
	"io"
	"testing"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// fakeHost records what the guest asks of the host.
type fakeHost struct {
	config  []byte
	buf     []byte
	sent    int
	lastErr []byte
	logs    []string
	status  int32 // returned by Send

	state       map[string][]byte
	defined     []string // metric definitions, "name{labels}"
	metricCalls int
}

func (h *fakeHost) InputBuffer(b []byte) int32 { h.buf = b; return abi.StatusOK }
func (h *fakeHost) Config(b []byte) int32 {
	if len(h.config) <= len(b) {
		copy(b, h.config)
	}
	return int32(len(h.config))
}
func (h *fakeHost) ConfigError(msg []byte) { h.lastErr = append([]byte(nil), msg...) }
func (h *fakeHost) ConnInfo(key int32, b []byte) int32 {
	v := [...]string{"route", "1.2.3.4:5", "target:1", "listen:2"}[key]
	if key == abi.InfoTarget {
		v = string(make([]byte, 300)) // longer than the scratch buffer
	}
	if len(v) <= len(b) {
		copy(b, v)
	}
	return int32(len(v))
}
func (h *fakeHost) Send(dir int32, b []byte) int32      { h.sent += len(b); return h.status }
func (h *fakeHost) CloseWrite(int32) int32              { return abi.StatusOK }
func (h *fakeHost) Close() int32                        { return abi.StatusOK }
func (h *fakeHost) Log(level int32, msg []byte)         { h.logs = append(h.logs, string(msg)) }
func (h *fakeHost) Stdout() io.Writer                   { return io.Discard }
func (h *fakeHost) Now() int64                          { return 0 }
func (h *fakeHost) SetTimer(int64, int64) int32         { return abi.StatusOK }
func (h *fakeHost) SetTarget(int64, []byte) int32       { return abi.StatusNoLateDial }
func (h *fakeHost) SetTag(int64, []byte, []byte) int32  { return abi.StatusOK }
func (h *fakeHost) Tag(int64, []byte, []byte) int32     { return abi.StatusNotFound }
func (h *fakeHost) DeferEnd(int64, int32) int32         { return abi.StatusNotAllowed }
func (h *fakeHost) PauseRead(int64, int32, int32) int32 { return abi.StatusNotAllowed }

type echoHandler struct{ DefaultHandler }

// OnData answers every chunk with itself and forwards it.
func (echoHandler) OnData(c *Conn, dir Direction, data []byte, end bool) Action {
	_ = c.Send(dir.Reverse(), data)
	return Forward
}

func withFactory(t *testing.T, f Factory) {
	prev := registered
	registered = f
	t.Cleanup(func() { registered = prev })
}

func TestDispatchAllocatesNothingPerChunk(t *testing.T) {
	withFactory(t, func([]byte) (Plugin, error) { return Shared(echoHandler{}), nil })
	h := &fakeHost{}
	in := newInstance(h)
	if rc := in.Init(); rc != abi.OK {
		t.Fatalf("init %d: %s", rc, h.lastErr)
	}
	if len(h.buf) != DefaultBufferSize {
		t.Fatalf("input buffer %d bytes", len(h.buf))
	}
	if rc := in.OnOpen(7); rc != abi.OK {
		t.Fatalf("open %d", rc)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if a := in.OnData(7, abi.DirClientToServer, 1024, 0); a != abi.ActionForward {
			t.Fatalf("action %d", a)
		}
	})
	if allocs != 0 || h.sent != 1001*1024 {
		t.Fatalf("%v allocs per chunk, %d bytes sent", allocs, h.sent)
	}
}

func TestInitErrors(t *testing.T) {
	withFactory(t, func(cfg []byte) (Plugin, error) {
		if string(cfg) != `{"a":1}` {
			t.Errorf("config %q", cfg)
		}
		return nil, errors.New("bad: rule 1")
	})
	h := &fakeHost{config: []byte(`{"a":1}`)}
	if rc := newInstance(h).Init(); rc != abi.Reject || string(h.lastErr) != "bad: rule 1" {
		t.Fatalf("rc %d, error %q", rc, h.lastErr)
	}
	withFactory(t, func([]byte) (Plugin, error) { return nil, nil })
	if rc := newInstance(h).Init(); rc != abi.Reject || string(h.lastErr) != "sdk: the plugin's factory returned no plugin and no error" {
		t.Fatalf("rc %d, error %q", rc, h.lastErr)
	}
	withFactory(t, nil)
	if rc := newInstance(h).Init(); rc != abi.Reject || string(h.lastErr) != "sdk: no plugin registered: call sdk.Register from func init of package main" {
		t.Fatalf("rc %d, error %q", rc, h.lastErr)
	}
}

func TestConnOutsideCallbacks(t *testing.T) {
	var kept *Conn
	withFactory(t, func([]byte) (Plugin, error) {
		return pluginFunc(func(c *Conn) (Handler, error) { kept = c; return nil, nil }), nil
	})
	h := &fakeHost{status: abi.StatusClosed}
	in := newInstance(h)
	in.Init()
	in.OnOpen(1)
	if err := kept.Send(ClientToServer, []byte("x")); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("send outside a callback: %v", err)
	}
	if err := kept.Close(); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("close outside a callback: %v", err)
	}
	if i := kept.Info(); i != (Info{}) {
		t.Fatalf("info outside a callback: %+v", i)
	}
	// A nil handler forwards; statuses map to errors inside callbacks.
	if a := in.OnData(1, 0, 3, 0); a != abi.ActionForward {
		t.Fatalf("action %d", a)
	}
	// Unknown connections and bad lengths are forwarded, not trusted.
	if a := in.OnData(99, 0, 3, 0); a != abi.ActionForward {
		t.Fatalf("unknown conn: action %d", a)
	}
	if a := in.OnData(1, 0, DefaultBufferSize+1, 0); a != abi.ActionForward {
		t.Fatalf("bad length: action %d", a)
	}
	in.OnClose(1)
	in.OnClose(1) // twice: ignored
}

func TestInfoAskedOnce(t *testing.T) {
	var info Info
	withFactory(t, func([]byte) (Plugin, error) {
		return pluginFunc(func(c *Conn) (Handler, error) { info = c.Info(); c.Info(); return nil, nil }), nil
	})
	h := &fakeHost{}
	in := newInstance(h)
	in.Init()
	in.OnOpen(1)
	if info.Route != "route" || info.Client != "1.2.3.4:5" || len(info.Target) != 300 || info.Listen != "listen:2" {
		t.Fatalf("info %+v", info)
	}
}

type pluginFunc func(c *Conn) (Handler, error)

func (f pluginFunc) NewConn(c *Conn) (Handler, error) { return f(c) }

func TestStatusErrors(t *testing.T) {
	for st, want := range map[int32]error{
		abi.StatusOK: nil, abi.StatusBadArgument: ErrBadArgument, abi.StatusClosed: ErrClosed,
		abi.StatusNotAllowed: ErrNotAllowed, abi.StatusTooLarge: ErrTooLarge,
	} {
		if got := statusErr(st); got != want {
			t.Errorf("status %d: %v, want %v", st, got, want)
		}
	}
	if got := statusErr(-99).Error(); got != "sdk: unknown host status -99" {
		t.Errorf("got %q", got)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{ClientToServer.String(), "client -> server"},
		{ServerToClient.String(), "server -> client"},
		{Direction(5).String(), "Direction(5)"},
		{ClientToServer.Reverse().String(), "server -> client"},
		{Forward.String(), "forward"}, {Drop.String(), "drop"}, {Hold.String(), "hold"},
		{Action(9).String(), "Action(9)"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestDecodeConfig(t *testing.T) {
	type cfg struct {
		Name  string   `json:"name"`
		N     int      `json:"n"`
		On    bool     `json:"on"`
		List  []string `json:"list"`
		Inner struct {
			X float64 `json:"x"`
		} `json:"inner"`
	}
	for _, tc := range []struct{ in, want string }{
		{``, ""},
		{"  \n", ""},
		{`{"name":"a","n":2,"on":true,"list":["x"],"inner":{"x":1.5}}`, ""},
		{`{"nmae":"a"}`, `config: unknown setting "nmae"`},
		{`{"n":"2"}`, `config: "n" must be a whole number, got a JSON string`},
		{`{"n":2.5}`, `config: "n" must be a whole number, got a JSON number 2.5`},
		{`{"on":1}`, `config: "on" must be true or false, got a JSON number`},
		{`{"list":"x"}`, `config: "list" must be a list, got a JSON string`},
		{`{"inner":{"x":"y"}}`, `config: "inner.x" must be a number, got a JSON string`},
		{`"str"`, `config: must be an object, got a JSON string`},
		{`{"name":"a"}x`, `config: unexpected data after the JSON object`},
		{`{"name":`, `config: invalid JSON: it ends too early`},
		{`{"name" "a"}`, `config: invalid JSON at byte 9: invalid character '"' after object key`},
	} {
		var c cfg
		err := DecodeConfig([]byte(tc.in), &c)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("DecodeConfig(%s):\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// idHandler sends its connection's ID on every chunk, so a test sees which
// connection a call reached.
type idHandler struct{ DefaultHandler }

func (idHandler) OnData(c *Conn, dir Direction, data []byte, end bool) Action {
	_ = c.Send(dir, []byte{byte(c.ID() >> 8), byte(c.ID())})
	return Drop
}

// TestConnLookupAcrossSlots: connections whose IDs share a slot of the
// lookup cache (IDs connSlots apart) each get their own calls, before and
// after one of them closes, and a closed ID reaches no handler.
func TestConnLookupAcrossSlots(t *testing.T) {
	withFactory(t, func([]byte) (Plugin, error) { return Shared(idHandler{}), nil })
	h := &recordingHost{}
	in := newInstance(h)
	if rc := in.Init(); rc != abi.OK {
		t.Fatalf("init %d: %s", rc, h.lastErr)
	}
	ids := []int64{1, 1 + connSlots, 1 + 2*connSlots, 2}
	for _, id := range ids {
		if rc := in.OnOpen(id); rc != abi.OK {
			t.Fatalf("open %d: %d", id, rc)
		}
	}
	call := func(id int64) (int32, int64) {
		h.last = -1
		a := in.OnData(id, abi.DirClientToServer, 1, 0)
		return a, h.last
	}
	for _, id := range ids {
		if a, got := call(id); a != abi.ActionDrop || got != id {
			t.Errorf("conn %d: action %d, handled by conn %d", id, a, got)
		}
	}
	in.OnClose(1 + 2*connSlots) // the one in the shared slot
	in.OnClose(1)
	for _, id := range []int64{1 + connSlots, 2} {
		if a, got := call(id); a != abi.ActionDrop || got != id {
			t.Errorf("after closes, conn %d: action %d, handled by conn %d", id, a, got)
		}
	}
	for _, id := range []int64{1, 1 + 2*connSlots} {
		if a, got := call(id); a != abi.ActionForward || got != -1 {
			t.Errorf("closed conn %d: action %d, handled by conn %d; want forward, no handler", id, a, got)
		}
	}
}

// recordingHost is a fakeHost that keeps the ID the last Send carried.
type recordingHost struct {
	fakeHost
	last int64
}

func (h *recordingHost) Send(dir int32, b []byte) int32 {
	h.last = int64(b[0])<<8 | int64(b[1])
	return abi.StatusOK
}
