package plugins_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/examples/plugins/internal/wasmtest"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// TestRustUpper runs the committed rust-upper.wasm (make check keeps it in
// step with its sources) between a real client and a real server.
func TestRustUpper(t *testing.T) {
	tn := wasmtest.Start(t, "rust-upper/rust-upper.wasm", "")
	client, server := tn.Dial()
	client.Write([]byte("get key:1\r\n"))
	if got := wasmtest.Read(t, server, 11); got != "GET KEY:1\r\n" {
		t.Fatalf("server got %q", got)
	}
	server.Write([]byte("hello, client\n"))
	if got := wasmtest.Read(t, client, 14); got != "hello, client\n" {
		t.Fatalf("client got %q", got)
	}
	big := strings.Repeat("abcdefghij", 10000) // more than the 16 KiB input buffer
	client.Write([]byte("ALREADY UPPER\n" + big))
	client.CloseWrite()
	if got, want := wasmtest.ReadAll(t, server), "ALREADY UPPER\n"+strings.ToUpper(big); got != want {
		t.Fatalf("server got %d bytes, want %d (first %.40q)", len(got), len(want), got)
	}
	server.CloseWrite()
	if got := wasmtest.ReadAll(t, client); got != "" {
		t.Fatalf("client got %q more", got)
	}
}

func TestRustUpperRejectsConfig(t *testing.T) {
	m := wasmtest.Module(t, "rust-upper/rust-upper.wasm")
	_, err := m.NewPlugin(context.Background(), plugin.Options{Name: "rust-upper", Config: []byte(`{"x":1}`)})
	if ce, ok := err.(*plugin.ConfigError); !ok || ce.Message != "rust-upper: takes no configuration" {
		t.Fatalf("got %v", err)
	}
}
