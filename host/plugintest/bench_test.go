package plugintest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/wasm"
	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// sinkHost is a connection that takes whatever the guest sends.
type sinkHost struct {
	wasm.NoConn // the ABI v2 functions: not used by these guests
	sent        int
}

func (h *sinkHost) Send(_ int32, b []byte) int32 { h.sent += len(b); return abi.StatusOK }
func (h *sinkHost) CloseWrite(int32) int32       { return abi.StatusOK }
func (h *sinkHost) Close() int32                 { return abi.StatusOK }
func (h *sinkHost) ConnInfo(int32) (string, int32) {
	return "", abi.StatusOK
}
func (h *sinkHost) Log(int32, []byte) {}

// guest instantiates the plugin in dir through the runtime's internals, the
// code plugin.Plugin runs per chunk, without a connection around it.
func guest(b *testing.B, dir string, config string, mode wasm.Mode) *wasm.Instance {
	b.Helper()
	bin := Build(b, dir)
	ctx := context.Background()
	eng, err := wasm.NewEngine(CacheDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close(ctx) })
	c, err := eng.Compile(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	in, err := c.Instantiate(ctx, wasm.Options{
		Mode: mode, MemoryLimit: 64 << 20, CallTimeout: time.Second, InitTimeout: 10 * time.Second,
		MaxOutput: 4 << 20, Config: []byte(config), Log: func(int32, []byte) {},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(ctx) })
	return in
}

// BenchmarkGuestChunk is the cost of one chunk through a Go guest built with
// package sdk, in the real runtime: the copy into guest memory, the call,
// the SDK's dispatch, the plugin's work and its sends. noop forwards;
// replace scans for a pattern that is absent (it forwards too) or present
// once per 256 bytes (it rewrites: Drop + one send of the new bytes).
func BenchmarkGuestChunk(b *testing.B) {
	cases := []struct {
		name, dir, config string
		fill              func(n int) []byte
	}{
		{"noop", "../../plugins/noop", "", text},
		{"replace-miss", "../../plugins/replace", `{"from":"needle","to":"pin"}`, text},
		{"replace-hit", "../../plugins/replace", `{"from":"needle","to":"pin"}`, withNeedles},
	}
	for _, tc := range cases {
		for _, mode := range []wasm.Mode{wasm.Sandboxed, wasm.Trusted} {
			for _, size := range []int{64, 1 << 10, 16 << 10, 64 << 10} {
				mname := map[wasm.Mode]string{wasm.Sandboxed: "sandboxed", wasm.Trusted: "trusted"}[mode]
				b.Run(fmt.Sprintf("%s/%s/%s", tc.name, mname, sizeName(size)), func(b *testing.B) {
					in := guest(b, tc.dir, tc.config, mode)
					h := &sinkHost{}
					if r, err := in.OnOpen(h, 1); err != nil || r != abi.OK {
						b.Fatalf("on_open: %d %v", r, err)
					}
					chunk := tc.fill(size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						a, err := in.OnData(h, 1, abi.DirClientToServer, chunk, false)
						if err != nil || a == abi.ActionHold {
							b.Fatalf("on_data: %d %v", a, err)
						}
					}
				})
			}
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func text(n int) []byte {
	return bytes.Repeat([]byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"), n/46+1)[:n]
}

func withNeedles(n int) []byte {
	b := text(n)
	for i := 100; i+6 <= n-10; i += 256 {
		copy(b[i:], "needle")
	}
	return b
}

// BenchmarkGuestCodec is the cost of the codec plugin per 16 KiB chunk
// (sandboxed): base64 encoding, decoding, and XOR.
func BenchmarkGuestCodec(b *testing.B) {
	const size = 16 << 10
	plain := text(size)
	encoded := []byte(base64.StdEncoding.EncodeToString(plain))[:size] // a multiple of 4
	for _, tc := range []struct {
		name, config string
		chunk        []byte
	}{
		{"base64-encode", `{"codec":"base64","mode":"encode"}`, plain},
		{"base64-decode", `{"codec":"base64","mode":"decode"}`, encoded},
		{"xor", `{"codec":"xor","mode":"encode","key":"k3y"}`, plain},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := guest(b, "../../plugins/codec", tc.config, wasm.Sandboxed)
			h := &sinkHost{}
			if r, err := in.OnOpen(h, 1); err != nil || r != abi.OK {
				b.Fatalf("on_open: %d %v", r, err)
			}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if a, err := in.OnData(h, 1, abi.DirClientToServer, tc.chunk, false); err != nil || a != abi.ActionDrop {
					b.Fatalf("on_data: %d %v", a, err)
				}
			}
		})
	}
}

// BenchmarkGuestDeny is the cost of deny per 16 KiB chunk (sandboxed) that
// holds none of its patterns, case-sensitive and not.
func BenchmarkGuestDeny(b *testing.B) {
	const size = 16 << 10
	for _, tc := range []struct{ name, config string }{
		{"exact", `{"patterns":["FLUSHALL\r\n","FLUSHDB\r\n"]}`},
		{"ignore-case", `{"patterns":["FLUSHALL\r\n","FLUSHDB\r\n"],"ignore_case":true}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := guest(b, "../../plugins/deny", tc.config, wasm.Sandboxed)
			h := &sinkHost{}
			if r, err := in.OnOpen(h, 1); err != nil || r != abi.OK {
				b.Fatalf("on_open: %d %v", r, err)
			}
			chunk := text(size)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if a, err := in.OnData(h, 1, abi.DirClientToServer, chunk, false); err != nil || a != abi.ActionForward {
					b.Fatalf("on_data: %d %v", a, err)
				}
			}
		})
	}
}
