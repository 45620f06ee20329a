package plugins_test

import (
	"context"
	"testing"

	"github.com/tunnelwasm/tunnel/examples/plugins/internal/wasmtest"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

const denyConfig = `{"pattern":"FLUSHALL\r\n","reply":"-ERR command not allowed\r\n"}`

// TestThroughTunnel runs the committed c-deny.wasm (make check keeps it in
// step with deny.c) between a real client and a real server.
func TestCDeny(t *testing.T) {
	tn := wasmtest.Start(t, "c-deny/c-deny.wasm", denyConfig)
	client, server := tn.Dial()
	const reply = "-ERR command not allowed\r\n"

	// Whole pattern in one write.
	client.Write([]byte("SET a 1\r\nFLUSHALL\r\nGET a\r\n"))
	if got := wasmtest.Read(t, server, 16); got != "SET a 1\r\nGET a\r\n" {
		t.Fatalf("server got %q", got)
	}
	if got := wasmtest.Read(t, client, len(reply)); got != reply {
		t.Fatalf("client got %q", got)
	}
	// Split across writes: the tail "FLUSH" is kept, then dropped.
	client.Write([]byte("PING\r\nFLUSH"))
	if got := wasmtest.Read(t, server, 6); got != "PING\r\n" {
		t.Fatalf("server got %q", got)
	}
	client.Write([]byte("ALL\r\nECHO x\r\n"))
	if got := wasmtest.Read(t, server, 8); got != "ECHO x\r\n" {
		t.Fatalf("server got %q", got)
	}
	if got := wasmtest.Read(t, client, len(reply)); got != reply {
		t.Fatalf("client got %q", got)
	}
	// A kept tail that turns out not to be the pattern is passed on, and
	// so is one at the end of the stream.
	client.Write([]byte("FLU"))
	client.Write([]byte("X\r\nFLUSHA"))
	client.CloseWrite()
	if got := wasmtest.ReadAll(t, server); got != "FLUX\r\nFLUSHA" {
		t.Fatalf("server got %q", got)
	}
	// The server's bytes pass untouched, the pattern included.
	server.Write([]byte("$8\r\nFLUSHALL\r\n"))
	server.CloseWrite()
	if got := wasmtest.ReadAll(t, client); got != "$8\r\nFLUSHALL\r\n" {
		t.Fatalf("client got %q", got)
	}
	logs := tn.Messages()
	if len(logs) != 2 || logs[0] != "WARN c-deny: blocked the pattern from the client" {
		t.Fatalf("logs %q", logs)
	}
}

func TestCDenyBadConfig(t *testing.T) {
	m := wasmtest.Module(t, "c-deny/c-deny.wasm")
	for _, tc := range []struct{ config, want string }{
		{``, `c-deny: "pattern" must be set and not empty`},
		{`{"pattern":""}`, `c-deny: "pattern" must be set and not empty`},
		{`{"pattern":"x","reply":"\q"}`, `c-deny: "reply": a JSON string of at most 1024 bytes`},
	} {
		_, err := m.NewPlugin(context.Background(), plugin.Options{Name: "c-deny", Config: []byte(tc.config)})
		ce, ok := err.(*plugin.ConfigError)
		if !ok || ce.Message != tc.want {
			t.Errorf("config %q: got %v, want config error %q", tc.config, err, tc.want)
		}
	}
}
