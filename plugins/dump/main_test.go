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

func TestNative(t *testing.T) { testDump(t, sdktest.Native) }

func testDump(t *testing.T, start sdktest.Starter) {
	t.Run("hex to stdout", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{})
		c := p.Open()
		// Each step waits for the bytes to come through, so the order of
		// the dump is the same through a real tunnel.
		c.Write(c2s, []byte("Hello, world!\r\nand more\n"))
		if got := c.Read(c2s, 24); string(got) != "Hello, world!\r\nand more\n" {
			t.Fatalf("forwarded %q", got)
		}
		c.Write(s2c, []byte{0, 1, 2, 0xff})
		if got := c.Read(s2c, 4); string(got) != "\x00\x01\x02\xff" {
			t.Fatalf("forwarded %q", got)
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("forwarded %q", got)
		}
		c.End(s2c)
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("forwarded %q", got)
		}
		want := "#1 client -> server 24 bytes\n" +
			"00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0d 0a 61  |Hello, world!..a|\n" +
			"00000010  6e 64 20 6d 6f 72 65 0a                           |nd more.|\n" +
			"#1 server -> client 4 bytes\n" +
			"00000000  00 01 02 ff                                       |....|\n" +
			"#1 client -> server end\n" +
			"#1 server -> client end\n"
		if got := string(p.Stdout()); got != want {
			t.Fatalf("stdout:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("text to the log", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"format":"text","output":"log"}`})
		c := p.Open()
		c.Write(c2s, []byte("GET / HTTP/1.0\r\n\r\n"))
		c.End(c2s)
		c.ReadAll(c2s)
		logs := p.Logs()
		want := []sdktest.Log{
			{Level: sdk.LevelInfo, Msg: "#1 client -> server 18 bytes\nGET / HTTP/1.0\\r\\n\n\\r\\n"},
			{Level: sdk.LevelInfo, Msg: "#1 client -> server end"},
		}
		if len(logs) != 2 || logs[0] != want[0] || logs[1] != want[1] {
			t.Fatalf("logs %q\nwant %q", logs, want)
		}
		if len(p.Stdout()) != 0 {
			t.Fatalf("stdout %q", p.Stdout())
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{`{"format":"octal"}`, `dump: "format" must be "hex" or "text", not "octal"`},
			{`{"output":"file"}`, `dump: "output" must be "stdout" or "log", not "file"`},
			{`{"path":"/etc/passwd"}`, `dump: config: unknown setting "path"`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

func TestWasm(t *testing.T) { testDump(t, plugintest.Wasm(t, ".")) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
