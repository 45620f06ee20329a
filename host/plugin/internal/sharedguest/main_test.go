package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/abi"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// do sends one command and returns the plugin's answer.
func do(t *testing.T, c sdktest.Conn, cmd string) string {
	t.Helper()
	c.Write(sdk.ClientToServer, []byte(cmd))
	var b []byte
	for !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, c.Read(sdk.ServerToClient, 1)...)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// testShared runs natively (sdktest) and as wasm in the real host
// (plugintest): the same commands give the same answers, the state is
// shared by connections, and the metrics add up.
func testShared(t *testing.T, start sdktest.Starter) {
	p := sdktest.MustStart(t, start, sdktest.Options{})
	a, b := p.Open(), p.Open()
	steps := []struct {
		c         sdktest.Conn
		cmd, want string
	}{
		{a, "get k", "nil"},
		{a, "set k hello", "ok"},
		{b, "get k", "hello"}, // another connection sees it
		{b, "add n 5", "= 5"}, // a missing key counts as 0
		{a, "add n -7", "= -2"},
		{a, "add k 1", sdk.ErrBadArgument.Error()}, // "hello" is not 8 bytes
		{a, "cas k hello bye", "true"},
		{b, "cas k hello again", "false"},
		{b, "get k", "bye"},
		{a, "cas fresh - one", "true"}, // "-": the key must be absent
		{a, "cas fresh - two", "false"},
		{a, "set fresh -", "ok"}, // an empty value deletes
		{a, "get fresh", "nil"},
		{a, "del k", "ok"},
		{b, "get k", "nil"},
		{a, "setn big 65536", "ok"},
		{a, "setn big 65537", sdk.ErrTooLarge.Error()},
		{a, "get n", "\xfe\xff\xff\xff\xff\xff\xff\xff"}, // -2, 8 bytes little-endian
		{a, "gauge 42", "ok"},
		{a, "observe 5", "ok"},
		{b, "observe 500", "ok"},
		{b, "defbad", sdk.ErrBadArgument.Error()},
	}
	for _, s := range steps {
		if got := do(t, s.c, s.cmd); got != s.want {
			t.Fatalf("%q answered %q, want %q", s.cmd, got, s.want)
		}
	}
	// The store's total is bounded (1 MiB by default): the 16th value of
	// 64 KiB does not fit beside "big" and the other keys.
	for i := range 15 {
		if got := do(t, a, "setn fill"+string(rune('a'+i))+" 65536"); i < 14 && got != "ok" || i == 14 && got != sdk.ErrTooLarge.Error() {
			t.Fatalf("fill %d: %q", i, got)
		}
	}
	if v, ok := sdktest.State(t, p, "big"); !ok || len(v) != 65536 {
		t.Fatalf("state big: %d bytes, %v", len(v), ok)
	}
	if m := sdktest.Metric(t, p, "commands_total", "cmd", "add"); m.Kind != abi.MetricCounter || m.Value != 3 {
		t.Fatalf("commands_total{cmd=add} = %+v, want a counter at 3", m)
	}
	if m := sdktest.Metric(t, p, "level"); m.Value != 42 {
		t.Fatalf("level = %+v", m)
	}
	m := sdktest.Metric(t, p, "sizes")
	if m.Kind != abi.MetricHistogram || m.Count != 2 || m.Sum != 505 || len(m.Buckets) != 3 || m.Buckets[0] != 0 || m.Buckets[1] != 1 || m.Buckets[2] != 1 {
		t.Fatalf("sizes = %+v, want 2 observations, 505, buckets [0 1 1]", m)
	}
	a.Abort()
	b.Abort()
}

func TestSharedNative(t *testing.T) { testShared(t, sdktest.Native) }

func TestSharedWasm(t *testing.T) { testShared(t, plugintest.Wasm(t, ".")) }
