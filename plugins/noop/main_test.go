package main

import (
	"bytes"
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

func TestNative(t *testing.T) { testNoop(t, sdktest.Native) }

func TestWasm(t *testing.T) { testNoop(t, plugintest.Wasm(t, ".")) }

func testNoop(t *testing.T, start sdktest.Starter) {
	p := sdktest.MustStart(t, start, sdktest.Options{})
	c := p.Open()
	up := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: several input buffers
	c.Write(sdk.ClientToServer, up)
	c.Write(sdk.ServerToClient, []byte("pong"))
	c.End(sdk.ClientToServer)
	c.End(sdk.ServerToClient)
	if got := c.ReadAll(sdk.ClientToServer); !bytes.Equal(got, up) {
		t.Fatalf("server got %d bytes, want %d", len(got), len(up))
	}
	if got := c.ReadAll(sdk.ServerToClient); string(got) != "pong" {
		t.Fatalf("client got %q", got)
	}
	if _, err := start(t, sdktest.Options{Config: `{"x":1}`}); err == nil || err.Error() != `noop: takes no settings: config: unknown setting "x"` {
		t.Fatalf("config error %v", err)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
