package main

import (
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

const (
	c2s = sdk.ClientToServer
	s2c = sdk.ServerToClient
)

func TestNative(t *testing.T) { testDeny(t, sdktest.Native) }

func testDeny(t *testing.T, start sdktest.Starter) {
	t.Run("drop and reply, case-insensitive, split across chunks", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{
			"patterns": ["FLUSHALL\r\n", "FLUSHDB\r\n"], "ignore_case": true,
			"reply": "-ERR command not allowed\r\n"}`})
		c := p.Open()
		c.Write(c2s, []byte("SET a 1\r\nflush"))
		c.Write(c2s, []byte("all\r\nGET a\r\n"))
		want := "SET a 1\r\nGET a\r\n"
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		if got := c.Read(s2c, 26); string(got) != "-ERR command not allowed\r\n" {
			t.Fatalf("client got %q", got)
		}
		c.Write(c2s, []byte("FLUSHDB\r\nflushdb\r\nPING\r\n"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "PING\r\n" {
			t.Fatalf("server got %q", got)
		}
		if got := c.Read(s2c, 52); string(got) != "-ERR command not allowed\r\n-ERR command not allowed\r\n" {
			t.Fatalf("client got %q", got)
		}
		c.Write(s2c, []byte("+PONG\r\n"))
		c.End(s2c)
		if got := c.ReadAll(s2c); string(got) != "+PONG\r\n" {
			t.Fatalf("client got %q", got)
		}
		logs := p.Logs()
		want2 := []sdktest.Log{
			{Level: sdk.LevelWarn, Msg: `deny: blocked "FLUSHALL\r\n" from the client`},
			{Level: sdk.LevelWarn, Msg: `deny: blocked "FLUSHDB\r\n" from the client and 1 more`},
		}
		if len(logs) != len(want2) || logs[0] != want2[0] || logs[1] != want2[1] {
			t.Fatalf("logs %q, want %q", logs, want2)
		}
	})
	t.Run("close", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"pattern":"DROP TABLE","action":"close","reply":"no.\n"}`})
		c := p.Open()
		c.Write(c2s, []byte("SELECT 1; DROP TA"))
		c.Write(c2s, []byte("BLE users; SELECT 2;"))
		if got := c.ReadAll(c2s); string(got) != "SELECT 1; " {
			t.Fatalf("server got %q", got)
		}
		if got := c.ReadAll(s2c); string(got) != "no.\n" {
			t.Fatalf("client got %q", got)
		}
	})
	t.Run("from client: the server's bytes pass untouched", func(t *testing.T) {
		// Attached to both directions so that the reply can reach the
		// client, but a server reply holding the pattern (a GET of the
		// value "FLUSHALL") is not the client's command.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{
			"pattern": "FLUSHALL\r\n", "from": "client", "reply": "-ERR no\r\n"}`})
		c := p.Open()
		c.Write(s2c, []byte("$8\r\nFLUSHALL\r\n"))
		if got := c.Read(s2c, 14); string(got) != "$8\r\nFLUSHALL\r\n" {
			t.Fatalf("client got %q", got)
		}
		c.Write(c2s, []byte("FLUSHALL\r\nPING\r\n"))
		if got := c.Read(c2s, 6); string(got) != "PING\r\n" {
			t.Fatalf("server got %q", got)
		}
		if got := c.Read(s2c, 9); string(got) != "-ERR no\r\n" {
			t.Fatalf("client got %q", got)
		}
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q more", got)
		}
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q more", got)
		}
	})
	t.Run("from server", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"pattern": "secret", "from": "server"}`})
		c := p.Open()
		c.Write(c2s, []byte("GET secret"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "GET secret" {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("the secret is out"))
		c.End(s2c)
		if got := c.ReadAll(s2c); string(got) != "the  is out" {
			t.Fatalf("client got %q", got)
		}
	})
	t.Run("pattern at the very end of the stream", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"pattern":"KEYS *"}`})
		c := p.Open()
		c.Write(c2s, []byte("KEYS"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "KEYS" {
			t.Fatalf("server got %q", got)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `deny: no pattern: set "pattern" = "..." or "patterns" = ["...", ...]`},
			{`{"patterns":["a",""]}`, `deny: pattern 2 is empty`},
			{`{"pattern":"a","patterns":["b"]}`, `deny: give either "pattern" or "patterns", not both`},
			{`{"pattern":"a","action":"kill"}`, `deny: "action" must be "drop" or "close", not "kill"`},
			{`{"pattern":"a","replay":"x"}`, `deny: config: unknown setting "replay"`},
			{`{"patterns":"a"}`, `deny: config: "patterns" must be a list, got a JSON string`},
			{`{"pattern":"a","from":"clients"}`, `deny: "from" must be "client", "server" or "both", not "clients"`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

func TestWasm(t *testing.T) { testDeny(t, plugintest.Wasm(t, ".")) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
