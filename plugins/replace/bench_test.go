package main

import (
	"bytes"
	"testing"

	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// BenchmarkNativeChunk is the cost of one 64 KiB chunk through replace
// compiled natively, against sdktest's emulated host: what a built-in
// plugin would cost if it were linked into the tunnel as Go code instead
// of embedded as WebAssembly (compare host/plugintest's
// BenchmarkGuestChunk/replace-*/sandboxed/64KiB). Figures in RATIONALE.md.
func BenchmarkNativeChunk(b *testing.B) {
	text := bytes.Repeat([]byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"), 64<<10/46+1)[:64<<10]
	hit := bytes.Clone(text)
	for i := 100; i+6 <= len(hit)-10; i += 256 {
		copy(hit[i:], "needle")
	}
	for _, tc := range []struct {
		name  string
		chunk []byte
	}{{"replace-miss", text}, {"replace-hit", hit}} {
		b.Run(tc.name, func(b *testing.B) {
			p := sdktest.MustStart(b, sdktest.Native, sdktest.Options{Config: `{"from":"needle","to":"pin"}`})
			c := p.Open()
			want := len(bytes.ReplaceAll(tc.chunk, []byte("needle"), []byte("pin")))
			b.SetBytes(int64(len(tc.chunk)))
			for b.Loop() {
				c.Write(sdk.ClientToServer, tc.chunk)
				c.Read(sdk.ClientToServer, want) // fails the benchmark if fewer came out
			}
		})
	}
}
