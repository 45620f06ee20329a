package plugins_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/examples/plugins/internal/wasmtest"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// TestASRedact runs the committed as-redact.wasm (make check keeps it in
// step with its AssemblyScript sources) between a real client and a real
// server.
func TestASRedact(t *testing.T) {
	tn := wasmtest.Start(t, "as-redact/as-redact.wasm", `{"min_digits": 12, "mask": "*"}`)
	client, server := tn.Dial()

	// The client's digits pass untouched: only the server's are masked.
	client.Write([]byte("GET card 4111111111111111\n"))
	if got := wasmtest.Read(t, server, 26); got != "GET card 4111111111111111\n" {
		t.Fatalf("server got %q", got)
	}
	// Whole runs in one write; a run of 11 digits is short enough to pass.
	server.Write([]byte("card=4111111111111111 id=12345678901 tel:123456789012\n"))
	want := "card=**************** id=12345678901 tel:************\n"
	if got := wasmtest.Read(t, client, len(want)); got != want {
		t.Fatalf("client got %q", got)
	}
	// A run split across writes: its first digits are kept until the
	// run is long enough, then masked; a split short run passes whole.
	server.Write([]byte("next 41111"))
	server.Write([]byte("11111"))
	server.Write([]byte("111111 and 1234"))
	server.Write([]byte("56 end\n"))
	want = "next **************** and 123456 end\n"
	if got := wasmtest.Read(t, client, len(want)); got != want {
		t.Fatalf("client got %q", got)
	}
	// Digits kept at the end of the stream are passed on with it.
	big := strings.Repeat("no digits here, ", 2000) // more than the 16 KiB input buffer
	server.Write([]byte(big + "9999"))
	server.CloseWrite()
	if got, want := wasmtest.ReadAll(t, client), big+"9999"; got != want {
		t.Fatalf("client got %d bytes, want %d (last %.40q)", len(got), len(want), got[max(0, len(got)-40):])
	}
	client.CloseWrite()
	if got := wasmtest.ReadAll(t, server); got != "" {
		t.Fatalf("server got %q more", got)
	}
	client.Close()
	if logs := tn.WaitMessages(t, 1); len(logs) != 1 || logs[0] != "INFO as-redact: masked 3 runs of digits" {
		t.Fatalf("logs %q", logs)
	}
}

func TestASRedactBadConfig(t *testing.T) {
	m := wasmtest.Module(t, "as-redact/as-redact.wasm")
	for _, tc := range []struct{ config, want string }{
		{`{"min_digits": 3}`, `as-redact: "min_digits": a whole number from 4 to 64`},
		{`{"min_digits": "13"}`, `as-redact: "min_digits": a whole number from 4 to 64`},
		{`{"mask": "7"}`, `as-redact: "mask": one printable ASCII character, not a digit`},
		{`{"mask": "##"}`, `as-redact: "mask": one printable ASCII character, not a digit`},
		{`{"pattern": "x"}`, `as-redact: unknown key "pattern" (known: min_digits, mask)`},
		{`[13]`, `as-redact: the config must be a JSON object`},
		{`{"mask": "#"} x`, `as-redact: the config must be a JSON object`},
	} {
		_, err := m.NewPlugin(context.Background(), plugin.Options{Name: "as-redact", Config: []byte(tc.config)})
		ce, ok := err.(*plugin.ConfigError)
		if !ok || ce.Message != tc.want {
			t.Errorf("config %q: got %v, want config error %q", tc.config, err, tc.want)
		}
	}
	for _, config := range []string{``, `{}`, " { \"mask\" : \"\\\\\" , \"min_digits\" : 64 } "} {
		p, err := m.NewPlugin(context.Background(), plugin.Options{Name: "as-redact", Config: []byte(config)})
		if err != nil {
			t.Errorf("config %q: %v", config, err)
			continue
		}
		p.Close()
	}
}
