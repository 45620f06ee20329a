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

const (
	base64Encode = `{"codec":"base64","mode":"encode"}`
	base64Decode = `{"codec":"base64","mode":"decode"}`
)

// encodedLen is the length of the padded base64 of an n-byte chunk.
func encodedLen(n int) int { return (n + 2) / 3 * 4 }

func testCodec(t *testing.T, start sdktest.Starter, size int) {
	for _, tc := range []struct{ name, enc, dec string }{
		{"base64", base64Encode, base64Decode},
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
	t.Run("base64 encodes each chunk whole, padded", func(t *testing.T) {
		c := sdktest.MustStart(t, start, sdktest.Options{Config: base64Encode}).Open()
		c.Write(c2s, []byte("hell"))
		c.Write(c2s, []byte("o"))
		c.End(c2s)
		// plain base64 of each chunk, one after the other: nothing waits
		// for the next chunk or the end.
		if got := c.ReadAll(c2s); string(got) != "aGVsbA==bw==" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("base64 pair delivers each chunk at once", func(t *testing.T) {
		// client -> A (encode) -> B (decode) -> server and back: one
		// request/response round trip per length, 1 to 7 bytes, in one
		// connection. Each chunk arrives whole while its stream stays
		// open: no byte waits for more bytes or the end of the stream.
		a := sdktest.MustStart(t, start, sdktest.Options{Config: base64Encode}).Open()
		b := sdktest.MustStart(t, start, sdktest.Options{Config: base64Decode}).Open()
		for n := 1; n <= 7; n++ {
			req, resp := []byte("abcdefg")[:n], []byte("1234567")[:n]
			a.Write(c2s, req)
			b.Write(c2s, a.Read(c2s, encodedLen(n)))
			if got := b.Read(c2s, n); string(got) != string(req) {
				t.Fatalf("server got %q, want %q", got, req)
			}
			b.Write(s2c, resp)
			a.Write(s2c, b.Read(s2c, encodedLen(n)))
			if got := a.Read(s2c, n); string(got) != string(resp) {
				t.Fatalf("client got %q, want %q", got, resp)
			}
		}
		sdktest.Finish(a)
		sdktest.Finish(b)
	})
	t.Run("base64 decode padded pieces split anywhere", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: base64Decode})
		c := p.Open()
		c.Write(c2s, []byte("YQ==Yg=="))
		if got := c.Read(c2s, 2); string(got) != "ab" {
			t.Fatalf("got %q", got)
		}
		// "abcd" as the encoder sends it, cut in two chunks at every
		// offset, line breaks too: the decoder keeps the incomplete group
		// for the next chunk.
		for _, piece := range []string{"YWJjZA==", "YWJj\r\nZA=\n="} {
			for i := 1; i < len(piece); i++ {
				c.Write(c2s, []byte(piece[:i]))
				c.Write(c2s, []byte(piece[i:]))
				if got := c.Read(c2s, 4); string(got) != "abcd" {
					t.Fatalf("%q cut at %d: got %q", piece, i, got)
				}
			}
		}
		c.Write(c2s, []byte("YWI=Yw==ZA"))
		c.Write(c2s, []byte("=="))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "abcd" {
			t.Fatalf("got %q", got)
		}
		if logs := p.Logs(); len(logs) != 0 {
			t.Fatalf("logs %q", logs)
		}
	})
	t.Run("base64 decode across chunks and line breaks", func(t *testing.T) {
		c := sdktest.MustStart(t, start, sdktest.Options{Config: base64Decode}).Open()
		for _, s := range []string{"aG", "Vs\r\nbG8", "sIHdv", "cmxk", "IQ", "=="} {
			c.Write(c2s, []byte(s))
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "hello, world!" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("bad base64 closes the connection", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: base64Decode})
		// Each case's last chunk is refused: nothing of it is passed on,
		// and the error counts from the start of the characters the
		// decoder had (the group kept from the chunk before, line breaks
		// left out).
		for i, tc := range []struct {
			chunks []string
			want   string // what the server got
			err    string
		}{
			{[]string{"aGVs\nbG!="}, "", "illegal base64 data at input byte 6"},
			{[]string{"aGVs!bG8"}, "", "illegal base64 data at input byte 4"},
			{[]string{"aGV", "s!bG8"}, "", "illegal base64 data at input byte 4"},
			{[]string{"aGVs", "YQ=a"}, "hel", "illegal base64 data at input byte 2"},
			{[]string{"YQ", "=a"}, "", "illegal base64 data at input byte 2"},
			{[]string{"Y==="}, "", "illegal base64 data at input byte 1"},
			{[]string{"===="}, "", "illegal base64 data at input byte 0"},
		} {
			c := p.Open()
			for _, s := range tc.chunks {
				c.Write(c2s, []byte(s))
			}
			if got := c.ReadAll(c2s); string(got) != tc.want {
				t.Fatalf("%q: server got %q, want %q", tc.chunks, got, tc.want)
			}
			want := "codec: client -> server: invalid base64: " + tc.err + "; closing the connection"
			if logs := p.Logs(); len(logs) != i+1 || logs[i].Msg != want {
				t.Fatalf("%q: logs %q, want %q last", tc.chunks, logs, want)
			}
		}
		n := len(p.Logs())
		c := p.Open()
		c.Write(c2s, []byte("aGVsbG8"))
		c.End(c2s)
		// the first group was decoded and passed on before the end showed
		// the stream is truncated: streaming cannot take it back.
		if got := c.ReadAll(c2s); string(got) != "hel" {
			t.Fatalf("server got %q", got)
		}
		if logs := p.Logs(); len(logs) != n+1 || logs[n].Msg != "codec: client -> server: base64 stream ends with 3 stray characters; closing the connection" {
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
