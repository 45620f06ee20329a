package main

import (
	"bytes"
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

func TestNative(t *testing.T) { testToxics(t, sdktest.Native) }

func TestWasm(t *testing.T) { testToxics(t, plugintest.Wasm(t, ".")) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testToxics(t *testing.T, start sdktest.Starter) {
	t.Run("latency: released in order when due, the end after the bytes", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"latency": "100ms"}}`})
		c := p.Open()
		c.Write(c2s, []byte("first "))
		p.Advance(40 * time.Millisecond)
		c.Write(c2s, []byte("second "))
		c.End(c2s) // deferred: the FIN waits for the held bytes
		// The server -> client stream has no toxic: it passes at once.
		c.Write(s2c, []byte("pong"))
		if got := c.Read(s2c, 4); string(got) != "pong" {
			t.Fatalf("client got %q", got)
		}
		p.Advance(60 * time.Millisecond) // t=100ms: "first " is due
		if got := c.Read(c2s, 6); string(got) != "first " {
			t.Fatalf("server got %q at 100ms", got)
		}
		p.Advance(40 * time.Millisecond) // t=140ms: "second " and the end
		if got := c.ReadAll(c2s); string(got) != "second " {
			t.Fatalf("server got %q then the end, want %q", got, "second ")
		}
		c.End(s2c)
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q more", got)
		}
		c.Wait()
	})
	t.Run("latency with jitter keeps the order", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"server": {"latency": "50ms", "jitter": "40ms"}, "seed": 7}`})
		c := p.Open()
		var want bytes.Buffer
		for i := range 20 {
			b := []byte(strings.Repeat(string(rune('a'+i)), i+1))
			want.Write(b)
			c.Write(s2c, b)
			p.Advance(3 * time.Millisecond)
		}
		c.End(s2c)
		p.Advance(100 * time.Millisecond) // past every chunk's 50 ± 40 ms
		if got := c.ReadAll(s2c); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("client got %q, want %q", got, want.Bytes())
		}
		c.Write(c2s, []byte("x"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "x" {
			t.Fatalf("server got %q", got)
		}
		c.Wait()
	})
	t.Run("slicer with a delay between pieces", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"slice": 3, "slice_delay": "10ms"}}`})
		c := p.Open()
		c.Write(c2s, []byte("abcdefgh"))
		c.End(c2s)
		if got := c.Read(c2s, 3); string(got) != "abc" { // the first piece is due at once
			t.Fatalf("server got %q first", got)
		}
		p.Advance(10 * time.Millisecond)
		if got := c.Read(c2s, 3); string(got) != "def" {
			t.Fatalf("server got %q second", got)
		}
		p.Advance(10 * time.Millisecond)
		if got := c.ReadAll(c2s); string(got) != "gh" {
			t.Fatalf("server got %q last", got)
		}
		c.End(s2c)
		c.Wait()
	})
	t.Run("slicer without delay", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"server": {"slice": 1}}`})
		c := p.Open()
		c.Write(s2c, []byte("hello"))
		c.End(s2c)
		if got := c.ReadAll(s2c); string(got) != "hello" {
			t.Fatalf("client got %q", got)
		}
		c.End(c2s)
		c.Wait()
	})
	t.Run("reset after N bytes", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"reset_after": 10}}`})
		c := p.Open()
		c.Write(c2s, []byte("0123456"))
		c.Write(c2s, []byte("789abcdef"))
		if got := c.ReadAll(c2s); string(got) != "0123456789" {
			t.Fatalf("server got %q, want the first 10 bytes", got)
		}
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
		want := sdktest.Log{Level: sdk.LevelInfo, Msg: "toxics: reset after 10 bytes client -> server"}
		if logs := p.Logs(); len(logs) != 1 || logs[0] != want {
			t.Fatalf("logs %q, want %q", logs, want)
		}
	})
	t.Run("reset after N bytes, behind latency", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"server": {"latency": "20ms", "reset_after": 4}}`})
		c := p.Open()
		c.Write(s2c, []byte("abcdef"))
		p.Advance(20 * time.Millisecond)
		if got := c.ReadAll(s2c); string(got) != "abcd" {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
	})
	t.Run("bandwidth: released at the rate, in 50 ms pieces", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"bandwidth": 1000}}`})
		c := p.Open()
		c.Write(c2s, []byte(strings.Repeat("a", 120))) // 50 + 50 + 20 bytes, due at 50, 100, 120 ms
		c.End(c2s)
		p.Advance(50 * time.Millisecond)
		if got := c.Read(c2s, 50); string(got) != strings.Repeat("a", 50) {
			t.Fatalf("server got %q at 50ms", got)
		}
		p.Advance(50 * time.Millisecond)
		if got := c.Read(c2s, 50); string(got) != strings.Repeat("a", 50) {
			t.Fatalf("server got %q at 100ms", got)
		}
		p.Advance(20 * time.Millisecond) // the rest, then the end
		if got := c.ReadAll(c2s); string(got) != strings.Repeat("a", 20) {
			t.Fatalf("server got %q at 120ms", got)
		}
		c.End(s2c)
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("max_held: the sender waits rather than the plugin holding all it writes", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"latency": "1s"}, "max_held": 16000}`})
		c := p.Open()
		var sent []byte
		for i := range 4 {
			b := []byte(strings.Repeat(string(rune('a'+i)), 8000))
			c.Write(c2s, b)
			sent = append(sent, b...)
			if paused := i >= 2; c.ReadPaused(c2s) != paused {
				t.Fatalf("after write %d (%d bytes held): reads paused %v, want %v", i+1, 8000*min(i+1, 3), !paused, paused)
			}
		}
		p.Advance(time.Second) // the three held writes go; the fourth is read now
		if got := c.Read(c2s, 24000); string(got) != string(sent[:24000]) {
			t.Fatalf("server got %.20q...", got)
		}
		c.Write(c2s, nil) // the plugin has the fourth before the clock moves on
		p.Advance(time.Second)
		if got := c.Read(c2s, 8000); string(got) != string(sent[24000:]) {
			t.Fatalf("server got %.20q..., want the fourth write a latency after the resume", got)
		}
		sdktest.Finish(c)
	})
	t.Run("max_held: a drained burst's buffer goes back to the instance", func(t *testing.T) {
		// Connections that each once filled max_held (1 MiB, the default)
		// and stay open: their buffers, kept, would add up past the
		// instance's memory_limit (16 MiB under plugintest) and fail it,
		// at the 4th. Twelve, not more: the Go guest's heap frees what
		// was released only when its GC runs, which depends on how the
		// tunnel cut the reads, and 24 came near the limit once in CI.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"latency": "1s"}}`})
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		const chunks = 17 // 1 MiB + 64 KiB: the last write pauses the reads
		var conns []sdktest.Conn
		for i := range 12 {
			c := p.Open()
			conns = append(conns, c)
			for range chunks {
				c.Write(c2s, chunk)
			}
			if !c.ReadPaused(c2s) {
				t.Fatalf("conn %d: reads not paused with %d bytes held: was the instance closed (out of memory)?", i, chunks*len(chunk))
			}
			p.Advance(time.Second)
			if got := c.Read(c2s, chunks*len(chunk)); !bytes.Equal(got, bytes.Repeat(chunk, chunks)) {
				t.Fatalf("conn %d: server got %d bytes, not the %d sent", i, len(got), chunks*len(chunk))
			}
		}
		for _, c := range conns {
			sdktest.Finish(c)
		}
	})
	t.Run("max_held_total: the instance's total pauses the senders whose bytes are held", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"latency": "1s"}, "max_held_total": 100000}`})
		a, b := p.Open(), p.Open()
		a.Write(c2s, bytes.Repeat([]byte("a"), 60000))
		if a.ReadPaused(c2s) {
			t.Fatal("a paused with 60000 bytes held in all")
		}
		b.Write(c2s, bytes.Repeat([]byte("b"), 60000))
		if !b.ReadPaused(c2s) {
			t.Fatal("b not paused with 120000 bytes held in all, over max_held_total")
		}
		if a.ReadPaused(c2s) {
			t.Fatal("a paused by b's bytes: only a sender whose bytes tip the total over waits")
		}
		p.Advance(time.Second)
		if got := b.Read(c2s, 60000); !bytes.Equal(got, bytes.Repeat([]byte("b"), 60000)) {
			t.Fatalf("server got %d bytes of b", len(got))
		}
		a.Read(c2s, 60000)
		b.Write(c2s, nil)
		if b.ReadPaused(c2s) {
			t.Fatal("b still paused once the instance's bytes are out")
		}
		sdktest.Finish(a)
		sdktest.Finish(b)
	})
	t.Run("max_held_total: a paused sender resumes once its own bytes are out, the total still high", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"latency": "1s"}, "max_held_total": 100000}`})
		a, b := p.Open(), p.Open()
		a.Write(c2s, bytes.Repeat([]byte("a"), 60000))
		p.Advance(500 * time.Millisecond)
		b.Write(c2s, bytes.Repeat([]byte("b"), 60000))
		if !b.ReadPaused(c2s) {
			t.Fatal("b not paused with 120000 bytes held in all")
		}
		p.Advance(500 * time.Millisecond) // a's out: 60000 held, b's
		a.Read(c2s, 60000)
		a.Write(c2s, bytes.Repeat([]byte("A"), 60000)) // 120000 again
		if !a.ReadPaused(c2s) || !b.ReadPaused(c2s) {
			t.Fatalf("paused: a %v, b %v; want both", a.ReadPaused(c2s), b.ReadPaused(c2s))
		}
		p.Advance(500 * time.Millisecond) // b's out, a's 60000 still held (over half)
		if got := b.Read(c2s, 60000); !bytes.Equal(got, bytes.Repeat([]byte("b"), 60000)) {
			t.Fatalf("server got %d bytes of b", len(got))
		}
		b.Write(c2s, nil)
		if b.ReadPaused(c2s) {
			t.Fatal("b still paused with none of its bytes held")
		}
		p.Advance(500 * time.Millisecond)
		a.Read(c2s, 60000)
		a.Write(c2s, nil)
		if a.ReadPaused(c2s) {
			t.Fatal("a still paused with none of its bytes held")
		}
		sdktest.Finish(a)
		sdktest.Finish(b)
	})
	t.Run("slow close: the half-close waits", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"server": {"slow_close": "1s"}}`})
		c := p.Open()
		c.Write(s2c, []byte("bye"))
		c.End(s2c)
		if got := c.Read(s2c, 3); string(got) != "bye" { // the bytes at once
			t.Fatalf("client got %q", got)
		}
		c.Write(c2s, []byte("still open")) // the other way is untouched
		if got := c.Read(c2s, 10); string(got) != "still open" {
			t.Fatalf("server got %q", got)
		}
		p.Advance(time.Second)
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q more", got)
		}
		c.End(c2s)
		c.ReadAll(c2s)
		c.Wait()
	})
	t.Run("timeout: nothing passes, then the connection is closed", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"server": {"timeout": "500ms"}}`})
		c := p.Open()
		c.Write(c2s, []byte("GET\r\n"))
		if got := c.Read(c2s, 5); string(got) != "GET\r\n" {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("reply")) // swallowed
		p.Advance(500 * time.Millisecond)
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
		want := []sdktest.Log{{Level: sdk.LevelInfo, Msg: "toxics: timeout server -> client: closing in 500ms"}, {Level: sdk.LevelInfo, Msg: "toxics: timeout: closing the connection"}}
		if logs := p.Logs(); len(logs) != 2 || logs[0] != want[0] || logs[1] != want[1] {
			t.Fatalf("logs %q, want %q", logs, want)
		}
	})
	t.Run("trigger on the client's bytes: the server's replies stop after COMMIT", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"server": {"timeout": "1s", "trigger": "COMMIT", "trigger_on": "client"}}`})
		c := p.Open()
		c.Write(c2s, []byte("BEGIN\r\n"))
		c.Write(s2c, []byte("+OK\r\n"))
		if got := c.Read(s2c, 5); string(got) != "+OK\r\n" {
			t.Fatalf("client got %q", got)
		}
		c.Write(c2s, []byte("COM")) // the pattern split across chunks
		c.Write(c2s, []byte("MIT\r\n"))
		if got := c.Read(c2s, 15); string(got) != "BEGIN\r\nCOMMIT\r\n" {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("+OK\r\n")) // the commit's reply is lost
		c.End(s2c)                      // and so is the end of the stream
		c.End(c2s)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q more", got)
		}
		p.Advance(time.Second) // the timeout closes the connection
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q after COMMIT", got)
		}
		c.Wait()
	})
	t.Run("trigger on the same bytes: reset after N bytes past the pattern", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"trigger": "SECRET", "reset_after": 3}}`})
		c := p.Open()
		c.Write(c2s, []byte("abcSEC"))
		c.Write(c2s, []byte("RETxyz123"))
		if got := c.ReadAll(c2s); string(got) != "abcSECRETxyz" {
			t.Fatalf("server got %q", got)
		}
		c.Wait()
	})
	t.Run("probability: a share of the connections", func(t *testing.T) {
		for _, tc := range []struct {
			prob     string
			min, max int
		}{{"0", 0, 0}, {"1", 20, 20}, {"0.5", 1, 19}} {
			p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"client": {"reset_after": 1, "probability": ` + tc.prob + `}}`})
			reset := 0
			for range 20 {
				c := p.Open()
				c.Write(c2s, []byte("ab"))
				if string(c.Read(c2s, 1)) != "a" {
					t.Fatal("lost the first byte")
				}
				c.End(c2s)
				if rest := c.ReadAll(c2s); len(rest) == 0 {
					reset++
				}
				c.End(s2c)
				c.ReadAll(s2c)
				c.Wait()
			}
			if reset < tc.min || reset > tc.max {
				t.Errorf("probability %s: %d of 20 connections reset, want %d to %d", tc.prob, reset, tc.min, tc.max)
			}
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `toxics: no toxic: configure "client" and/or "server", e.g. {"client": {"latency": "100ms"}}`},
			{`{"client": {"latency": "soon"}}`, `toxics: client: "latency" must be a duration such as "100ms", not "soon"`},
			{`{"server": {"jitter": "-1s"}}`, `toxics: server: "jitter" must be a duration such as "100ms", not "-1s"`},
			// Near the largest duration, now+latency wrapped (nothing
			// was delayed) and 2*jitter+1 made the guest panic.
			{`{"client": {"latency": "2562047h"}}`, `toxics: client: "latency" must be at most 24h, not "2562047h"`},
			{`{"client": {"jitter": "1500000h"}}`, `toxics: client: "jitter" must be at most 24h, not "1500000h"`},
			{`{"server": {"timeout": "25h"}}`, `toxics: server: "timeout" must be at most 24h, not "25h"`},
			{`{"client": {"slice": -2}}`, `toxics: client: "slice" must be >= 0, not -2`},
			{`{"client": {"slice_delay": "1ms"}}`, `toxics: client: "slice_delay" needs "slice"`},
			{`{"client": {"reset_after": -1}}`, `toxics: client: "reset_after" must be >= 0, not -1`},
			{`{"clients": {}}`, `toxics: config: unknown setting "clients"`},
			{`{"client": {"bandwidth": -5}}`, `toxics: client: "bandwidth" must be >= 0 bytes per second, not -5`},
			{`{"server": {"slow_close": "later"}}`, `toxics: server: "slow_close" must be a duration such as "100ms", not "later"`},
			{`{"server": {"timeout": "-1s"}}`, `toxics: server: "timeout" must be a duration such as "100ms", not "-1s"`},
			{`{"client": {"reset_after": 1, "probability": 1.5}}`, `toxics: client: "probability" must be from 0 to 1, not 1.5`},
			{`{"client": {"reset_after": 1, "trigger_on": "server"}}`, `toxics: client: "trigger_on" needs "trigger"`},
			{`{"client": {"reset_after": 1, "trigger": "x", "trigger_on": "both"}}`, `toxics: client: "trigger_on" must be "client" or "server", not "both"`},
			{`{"client": {"trigger": "x"}}`, `toxics: client: "probability" and "trigger" need a toxic to apply`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}
