package main

import (
	"crypto/sha256"
	"math/rand/v2"
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

func TestNative(t *testing.T) { testCodec(t, sdktest.Native, 3<<20) }

// pass writes in through dir of c in random chunks of up to maxChunk bytes,
// ends the stream and returns what came out.
func pass(c sdktest.Conn, dir sdk.Direction, in []byte, r *rand.Rand, maxChunk int) []byte {
	for rest := in; len(rest) > 0; {
		k := min(len(rest), 1+r.IntN(maxChunk))
		c.Write(dir, rest[:k])
		rest = rest[k:]
	}
	c.End(dir)
	return c.ReadAll(dir)
}

func testCodec(t *testing.T, start sdktest.Starter, size int) {
	for _, tc := range []struct{ name, enc, dec string }{
		{"base64", `{"codec":"base64","mode":"encode"}`, `{"codec":"base64","mode":"decode"}`},
		{"xor", `{"codec":"xor","mode":"encode","key":"s3cr3t!"}`, `{"codec":"xor","mode":"decode","key_hex":"73336372337421"}`},
	} {
		t.Run(tc.name+" pair restores the bytes", func(t *testing.T) {
			a := sdktest.MustStart(t, start, sdktest.Options{Config: tc.enc}).Open()
			b := sdktest.MustStart(t, start, sdktest.Options{Config: tc.dec}).Open()
			r := rand.New(rand.NewPCG(7, 8))
			up := make([]byte, size)
			down := make([]byte, size/2+1)
			src := rand.NewChaCha8([32]byte{7})
			_, _ = src.Read(up)
			_, _ = src.Read(down)
			// client -> A (encode) -> B (decode) -> server
			wire := pass(a, c2s, up, r, 70<<10)
			if sha256.Sum256(wire) == sha256.Sum256(up) {
				t.Fatal("the bytes between the tunnels are not encoded")
			}
			if got := pass(b, c2s, wire, r, 5000); sha256.Sum256(got) != sha256.Sum256(up) {
				t.Fatalf("client -> server: %d bytes in, %d out, sha256 differs", len(up), len(got))
			}
			// server -> B (encode) -> A (decode) -> client
			wire = pass(b, s2c, down, r, 1000)
			if got := pass(a, s2c, wire, r, 64<<10); sha256.Sum256(got) != sha256.Sum256(down) {
				t.Fatalf("server -> client: %d bytes in, %d out, sha256 differs", len(down), len(got))
			}
		})
	}
	t.Run("base64 is plain base64", func(t *testing.T) {
		c := sdktest.MustStart(t, start, sdktest.Options{Config: `{"codec":"base64","mode":"encode"}`}).Open()
		c.Write(c2s, []byte("hell"))
		c.Write(c2s, []byte("o"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "aGVsbG8=" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("base64 decode across chunks and line breaks", func(t *testing.T) {
		c := sdktest.MustStart(t, start, sdktest.Options{Config: `{"codec":"base64","mode":"decode"}`}).Open()
		for _, s := range []string{"aG", "Vs\r\nbG8", "sIHdv", "cmxk", "IQ", "=="} {
			c.Write(c2s, []byte(s))
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "hello, world!" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("bad base64 closes the connection", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"codec":"base64","mode":"decode"}`})
		c := p.Open()
		c.Write(c2s, []byte("aGVs\nbG8=aGVs"))
		if got := c.ReadAll(c2s); string(got) != "" {
			t.Fatalf("server got %q", got)
		}
		logs := p.Logs()
		if len(logs) != 1 || logs[0].Msg != "codec: client -> server: base64 data after the final padding; closing the connection" {
			t.Fatalf("logs %q", logs)
		}
		c = p.Open()
		c.Write(c2s, []byte("aGVsbG8"))
		c.End(c2s)
		// the first group was decoded and passed on before the end showed
		// the stream is truncated: streaming cannot take it back.
		if got := c.ReadAll(c2s); string(got) != "hel" {
			t.Fatalf("server got %q", got)
		}
		if logs = p.Logs(); len(logs) != 2 || logs[1].Msg != "codec: client -> server: base64 stream ends with 3 stray characters; closing the connection" {
			t.Fatalf("logs %q", logs)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `codec: "mode" is missing: "encode" (encode toward the server, decode the replies) or "decode" (the other end of the pair)`},
			{`{"mode":"encode"}`, `codec: "codec" is missing: "base64" or "xor"`},
			{`{"mode":"up","codec":"xor"}`, `codec: "mode" must be "encode" or "decode", not "up"`},
			{`{"mode":"encode","codec":"rot13"}`, `codec: "codec" must be "base64" or "xor", not "rot13"`},
			{`{"mode":"encode","codec":"xor"}`, `codec: xor needs a non-empty "key" (or "key_hex")`},
			{`{"mode":"encode","codec":"xor","key":""}`, `codec: xor needs a non-empty "key" (or "key_hex")`},
			{`{"mode":"encode","codec":"base64","key":"k"}`, `codec: base64 takes no key`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

func TestWasm(t *testing.T) { testCodec(t, plugintest.Wasm(t, "."), 1<<20) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
