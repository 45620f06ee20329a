package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

const (
	c2s = sdk.ClientToServer
	s2c = sdk.ServerToClient
)

func TestNative(t *testing.T) { testRatelimit(t, sdktest.Native) }

func TestWasm(t *testing.T) { testRatelimit(t, plugintest.Wasm(t, ".")) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testRatelimit(t *testing.T, start sdktest.Starter) {
	t.Run("connections per second: a burst, then one per interval", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"connections_per_second": 2, "connections_burst": 3, "reply": "-ERR too many connections\r\n"}`})
		var open []sdktest.Conn
		for range 3 {
			c := p.Open()
			c.Write(c2s, []byte("PING\r\n"))
			if got := c.Read(c2s, 6); string(got) != "PING\r\n" {
				t.Fatalf("server got %q", got)
			}
			open = append(open, c)
		}
		c := p.Open() // the fourth within the same instant: refused
		if got := c.ReadAll(s2c); string(got) != "-ERR too many connections\r\n" {
			t.Fatalf("the fourth connection got %q", got)
		}
		c.Wait()
		if v, _ := c.Tag("ratelimit.limited"); v != "connections" {
			t.Errorf("tag ratelimit.limited = %q", v)
		}
		p.Advance(499 * time.Millisecond) // not yet half a second: still refused
		c = p.Open()
		if got := c.ReadAll(s2c); string(got) != "-ERR too many connections\r\n" {
			t.Fatalf("at 499ms the connection got %q", got)
		}
		c.Wait()
		p.Advance(time.Millisecond) // one token back
		c = p.Open()
		c.Write(c2s, []byte("x"))
		if got := c.Read(c2s, 1); string(got) != "x" {
			t.Fatalf("server got %q", got)
		}
		open = append(open, c)
		if m := sdktest.Metric(t, p, "limited_total", "limit", "connections"); m.Value != 2 {
			t.Errorf("limited_total{limit=connections} = %d, want 2", m.Value)
		}
		if v, ok := sdktest.State(t, p, "c:127.0.0.1"); !ok || len(v) != 8 {
			t.Errorf("state c:127.0.0.1 = %x, %v; want the bucket's time", v, ok)
		}
		// Once the bucket is full again, the last close deletes it.
		p.Advance(10 * time.Second)
		for _, c := range open {
			sdktest.Finish(c)
		}
		if v, ok := sdktest.State(t, p, "c:127.0.0.1"); ok {
			t.Errorf("state c:127.0.0.1 = %x after the bucket refilled; want it deleted", v)
		}
	})
	t.Run("a tiny rate: the burst, then nothing", func(t *testing.T) {
		// 1e-12 per second: its interval overflowed int64, and even the
		// first connection, within the burst, was refused.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"connections_per_second": 1e-12, "connections_burst": 1, "reply": "-ERR later\r\n"}`})
		c := p.Open()
		c.Write(c2s, []byte("x"))
		if got := c.Read(c2s, 1); string(got) != "x" {
			t.Fatalf("the first connection: server got %q", got)
		}
		p.Advance(time.Hour)
		c2 := p.Open()
		if got := c2.ReadAll(s2c); string(got) != "-ERR later\r\n" {
			t.Fatalf("the second connection, an hour later, got %q", got)
		}
		c2.Wait()
		sdktest.Finish(c)
	})
	t.Run("a tiny byte rate: the burst, then nothing", func(t *testing.T) {
		// 1e-12 bytes per second: take bounds a run's cost (73 years), so
		// the bucket's interval per byte (31.7 billion years) says
		// nothing of which of the run's bytes it allows now.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 1e-12, "bytes_burst": 1}`})
		c := p.Open()
		c.Write(c2s, []byte("x"))
		if got := c.Read(c2s, 1); string(got) != "x" {
			t.Fatalf("server got %q, want the burst", got)
		}
		c.Write(c2s, []byte("hello world"))
		if m := sdktest.Metric(t, p, "delayed_bytes"); m.Value != 11 {
			t.Fatalf("delayed_bytes = %d, want 11: all of the second write waits", m.Value)
		}
		p.Advance(time.Hour)
		if m := sdktest.Metric(t, p, "delayed_bytes"); m.Value != 11 {
			t.Fatalf("delayed_bytes = %d an hour later, want 11", m.Value)
		}
		// More connections from the address draw on the same bucket: each
		// draw adds the capped cost, and the bucket's time overflowed
		// int64 after four of them, wrapped, and let the bytes through.
		var more []sdktest.Conn
		for i := range 6 {
			m := p.Open()
			more = append(more, m)
			m.Write(c2s, []byte("y"))
			if v := sdktest.Metric(t, p, "delayed_bytes"); v.Value != int64(12+i) {
				t.Fatalf("after %d more connections wrote a byte: delayed_bytes = %d, want %d", i+1, v.Value, 12+i)
			}
		}
		for _, m := range append(more, c) {
			m.Abort()
			m.Wait()
		}
	})
	t.Run("bytes per second, delayed: shaped by the timer, the end after them", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 1000, "bytes_burst": 100}`})
		c := p.Open()
		c.Write(c2s, []byte(strings.Repeat("a", 100))) // the burst: at once
		if got := c.Read(c2s, 100); string(got) != strings.Repeat("a", 100) {
			t.Fatalf("server got %q", got)
		}
		c.Write(c2s, []byte(strings.Repeat("b", 500))) // 500 more at 1000/s: in 500ms
		c.End(c2s)
		c.Write(s2c, []byte("server bytes are not limited"))
		if got := c.Read(s2c, 28); string(got) != "server bytes are not limited" {
			t.Fatalf("client got %q", got)
		}
		p.Advance(499 * time.Millisecond)
		p.Advance(time.Millisecond)
		if got := c.ReadAll(c2s); string(got) != strings.Repeat("b", 500) {
			t.Fatalf("server got %q", got)
		}
		c.End(s2c)
		c.ReadAll(s2c)
		c.Wait()
		if m := sdktest.Metric(t, p, "delayed_bytes_total"); m.Value != 500 {
			t.Errorf("delayed_bytes_total = %d, want 500", m.Value)
		}
	})
	t.Run("a sender over the rate is slowed down, not buffered", func(t *testing.T) {
		// 8 writes of 8000 bytes at once, at 10000 bytes/s: the first and
		// 2000 bytes of the second are the burst; the plugin holds the
		// rest of the second and pauses the client's reads meanwhile, so
		// the other six wait in the socket, not in the plugin (which held
		// all of them before, and closed a long upload at max_delayed).
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 10000, "bytes_burst": 10000}`})
		c := p.Open()
		var sent []byte
		for i := range 8 {
			b := []byte(strings.Repeat(string(rune('a'+i)), 8000))
			c.Write(c2s, b)
			sent = append(sent, b...)
		}
		if got := c.Read(c2s, 10000); string(got) != string(sent[:10000]) {
			t.Fatalf("server got %.20q..., want the burst at once", got)
		}
		if m := sdktest.Metric(t, p, "delayed_bytes"); m.Value != 6000 {
			t.Fatalf("delayed_bytes = %d with the reads paused, want 6000 (the rest of one write)", m.Value)
		}
		// Then 1000 bytes (100ms at the rate) every 100ms, in order, the
		// next write read as the one before has gone. The clock moves on
		// only once the server has them and the plugin has been shown
		// what the resume let the tunnel read (in real time).
		for off := 10000; off < len(sent); off += 1000 {
			p.Advance(100 * time.Millisecond)
			if got := c.Read(c2s, 1000); string(got) != string(sent[off:off+1000]) {
				t.Fatalf("at byte %d: server got %.20q..., want %.20q...", off, got, sent[off:])
			}
			c.Write(c2s, nil)
		}
		if m := sdktest.Metric(t, p, "delayed_bytes"); m.Value != 0 {
			t.Errorf("delayed_bytes = %d once all was sent, want 0", m.Value)
		}
		sdktest.Finish(c)
	})
	t.Run("a slow rate still moves bytes every 100 ms", func(t *testing.T) {
		// 300 bytes/s: the burst at once, then about 30 bytes per 100 ms,
		// not the rest in large slices seconds apart (a route's idle
		// timeout took such a connection for idle).
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 300, "bytes_burst": 300}`})
		c := p.Open()
		sent := []byte(strings.Repeat("0123456789abcdef", 192)) // 3072 bytes
		c.Write(c2s, sent)
		if got := c.Read(c2s, 300); string(got) != string(sent[:300]) {
			t.Fatalf("server got %q, want the burst at once", got)
		}
		p.Advance(100 * time.Millisecond)
		if got := c.Read(c2s, 25); string(got) != string(sent[300:325]) {
			t.Fatalf("server got %q 100ms later, want the next bytes", got)
		}
		p.Advance(10 * time.Second)
		if got := c.Read(c2s, len(sent)-325); string(got) != string(sent[325:]) {
			t.Fatalf("server got %d bytes, not the rest in order", len(got))
		}
		sdktest.Finish(c)
	})
	t.Run("bytes from the other direction do not put off the 100 ms timer", func(t *testing.T) {
		// The client's bytes wait for the timer due at 100ms; the
		// server's, queued at 60ms, must not move it to 160ms.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 300, "bytes_burst": 300, "bytes_from": "both"}`})
		c := p.Open()
		sent := []byte(strings.Repeat("0123456789abcdef", 192)) // 3072 bytes
		c.Write(c2s, sent)
		if got := c.Read(c2s, 300); string(got) != string(sent[:300]) {
			t.Fatalf("server got %q, want the burst at once", got)
		}
		p.Advance(60 * time.Millisecond)
		c.Write(s2c, sent)
		if got := c.Read(s2c, 300); string(got) != string(sent[:300]) {
			t.Fatalf("client got %q, want the burst at once", got)
		}
		p.Advance(40 * time.Millisecond)
		if got := c.Read(c2s, 25); string(got) != string(sent[300:325]) {
			t.Fatalf("server got %q 100ms later, want the next bytes", got)
		}
		p.Advance(20 * time.Second)
		if got := c.Read(c2s, len(sent)-325); string(got) != string(sent[325:]) {
			t.Fatalf("server got %d bytes, not the rest in order", len(got))
		}
		if got := c.Read(s2c, len(sent)-300); string(got) != string(sent[300:]) {
			t.Fatalf("client got %d bytes, not the rest in order", len(got))
		}
		sdktest.Finish(c)
	})
	for _, bound := range []string{"max_delayed", "max_delayed_total"} {
		t.Run(bound+" counts only the bytes that wait, not those the bucket lets go at once", func(t *testing.T) {
			// 1500 bytes against a full bucket of 1000: 1000 go at once,
			// 500 wait, within a bound of 1000.
			p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 1000, "bytes_burst": 1000, "` + bound + `": 1000, "reply": "busy\n"}`})
			c := p.Open()
			sent := []byte(strings.Repeat("0123456789", 150))
			c.Write(c2s, sent)
			if got := c.Read(c2s, 1000); string(got) != string(sent[:1000]) {
				t.Fatalf("server got %.20q..., want the first 1000 bytes at once", got)
			}
			p.Advance(500 * time.Millisecond)
			if got := c.Read(c2s, 500); string(got) != string(sent[1000:]) {
				t.Fatalf("server got %.20q..., want the last 500 bytes", got)
			}
			if m := sdktest.Metric(t, p, "limited_total", "limit", "bytes"); m.Value != 0 {
				t.Errorf("limited_total{limit=bytes} = %d, want 0", m.Value)
			}
			sdktest.Finish(c)
		})
	}
	t.Run("max_delayed below one read holds a run that finds nothing waiting, and bounds what piles up", func(t *testing.T) {
		// 1000 bytes/s, burst 100, max_delayed 1000. A write of 1500
		// waits whole (nothing waits before it), its sender paused: an
		// ordinary upload is not closed for a read larger than the bound.
		// Then two writes that the tunnel reads at once, once resumed,
		// pile up past it: the connection is closed.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 1000, "bytes_burst": 100, "max_delayed": 1000, "reply": "busy\n"}`})
		c := p.Open()
		c.Write(c2s, []byte(strings.Repeat("a", 100)))
		c.Read(c2s, 100)
		c.Write(c2s, []byte(strings.Repeat("b", 1500)))
		if !c.ReadPaused(c2s) {
			t.Fatal("a run of 1500 bytes over max_delayed 1000 with nothing waiting closed the connection; want it held, the sender paused")
		}
		c.Write(c2s, []byte(strings.Repeat("c", 600)))
		c.Write(c2s, []byte(strings.Repeat("d", 600)))
		p.Advance(1500 * time.Millisecond)
		if got := c.Read(c2s, 1500); string(got) != strings.Repeat("b", 1500) {
			t.Fatalf("server got %.20q..., want the 1500 held bytes", got)
		}
		c.Write(c2s, nil)
		if got := c.ReadAll(s2c); string(got) != "busy\n" {
			t.Fatalf("client got %q; want the reply once 1200 bytes piled up past max_delayed", got)
		}
		c.Wait()
	})
	t.Run("the bytes an instance delays are bounded in all", func(t *testing.T) {
		// The connections of an instance share its memory: 20 that each
		// delayed 1.4 MB ran the guest out of it, and every connection on
		// it was reset, other clients' too.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 1000, "bytes_burst": 10, "max_delayed": 1000, "max_delayed_total": 100, "reply": "busy\n"}`})
		a, b := p.Open(), p.Open()
		a.Write(c2s, []byte(strings.Repeat("a", 70))) // over the burst: delayed, 70 held
		b.Write(c2s, []byte(strings.Repeat("b", 60))) // 130 held in all: over
		if got := b.ReadAll(s2c); string(got) != "busy\n" {
			t.Fatalf("the connection over the instance's bound got %q", got)
		}
		b.Wait()
		p.Advance(time.Second)
		if got := a.Read(c2s, 70); string(got) != strings.Repeat("a", 70) {
			t.Fatalf("server got %q", got)
		}
		c := p.Open() // a's bytes are gone: room again
		c.Write(c2s, []byte(strings.Repeat("c", 60)))
		p.Advance(time.Second)
		if got := c.Read(c2s, 60); string(got) != strings.Repeat("c", 60) {
			t.Fatalf("server got %q from a connection that fits again", got)
		}
		sdktest.Finish(a)
		sdktest.Finish(c)
	})
	t.Run("bytes per second shared by the connections of one address", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bytes_per_second": 100, "bytes_burst": 10, "on_bytes": "close", "reply": "slow down\n"}`})
		a, b := p.Open(), p.Open()
		a.Write(c2s, []byte("123456"))
		if got := a.Read(c2s, 6); string(got) != "123456" {
			t.Fatalf("server got %q", got)
		}
		b.Write(c2s, []byte("7890")) // 10 bytes in all: the burst
		if got := b.Read(c2s, 4); string(got) != "7890" {
			t.Fatalf("server got %q", got)
		}
		b.Write(c2s, []byte("x")) // one more, now: over
		if got := b.ReadAll(s2c); string(got) != "slow down\n" {
			t.Fatalf("client got %q", got)
		}
		b.Wait()
		p.Advance(10 * time.Millisecond) // one byte's worth
		a.Write(c2s, []byte("y"))
		if got := a.Read(c2s, 1); string(got) != "y" {
			t.Fatalf("server got %q", got)
		}
		sdktest.Finish(a)
		if m := sdktest.Metric(t, p, "limited_total", "limit", "bytes"); m.Value != 1 {
			t.Errorf("limited_total{limit=bytes} = %d, want 1", m.Value)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `ratelimit: no limit: set "connections_per_second" and/or "bytes_per_second", e.g. {"connections_per_second": 10, "connections_burst": 20}`},
			{`{"connections_per_second": -1}`, `ratelimit: rates, bursts, max_delayed and max_delayed_total must not be negative`},
			{`{"bytes_burst": 5, "connections_per_second": 1}`, `ratelimit: "bytes_burst" needs "bytes_per_second"`},
			{`{"connections_burst": 5, "bytes_per_second": 1}`, `ratelimit: "connections_burst" needs "connections_per_second"`},
			{`{"bytes_per_second": 1, "bytes_from": "up"}`, `ratelimit: "bytes_from" must be "client", "server" or "both", not "up"`},
			{`{"bytes_per_second": 1, "on_bytes": "drop"}`, `ratelimit: "on_bytes" must be "delay" or "close", not "drop"`},
			{`{"rate": 1}`, `ratelimit: config: unknown setting "rate"`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}
