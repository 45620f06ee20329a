package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

const (
	c2s = sdk.ClientToServer
	s2c = sdk.ServerToClient
)

func TestNative(t *testing.T) { testRouter(t, sdktest.Native, 1) }

// TestWasm runs the same tests through a real tunnel; the split-at-every-
// offset test takes every 7th offset there (each is a connection).
func TestWasm(t *testing.T) { testRouter(t, plugintest.Wasm(t, "."), 7) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// nowhere is a target no test server listens on: a rule that must not be
// chosen points there.
const nowhere = "127.0.0.1:1"

// testConfig routes each protocol and name in want to the test's server and
// everything else nowhere.
func testConfig(want string) string {
	rules := []string{
		`{"protocol": "tls", "name": "exact.example.com", "target": "` + pick(want, "tls exact") + `"}`,
		`{"protocol": "tls", "name": "*.example.com", "target": "` + pick(want, "tls wildcard") + `"}`,
		`{"protocol": "tls", "name": "*.deep.example.com", "target": "` + pick(want, "tls deeper wildcard") + `"}`,
		`{"protocol": "tls", "target": "` + pick(want, "tls") + `"}`,
		`{"protocol": "http", "name": "www.example.org", "target": "` + pick(want, "http www") + `"}`,
		`{"protocol": "http", "target": "` + pick(want, "http") + `"}`,
		`{"protocol": "ssh", "target": "` + pick(want, "ssh") + `"}`,
		`{"protocol": "redis", "target": "` + pick(want, "redis") + `"}`,
		`{"protocol": "timeout", "target": "` + pick(want, "timeout") + `"}`,
	}
	return `{"rules": [` + strings.Join(rules, ",") + `], "default": "` + pick(want, "default") + `", "timeout": "2s"}`
}

func pick(want, rule string) string {
	if want == rule {
		return sdktest.Server
	}
	return nowhere
}

// routed checks, once the connection is done, which target the router
// chose and the tags it set.
func routed(t *testing.T, c sdktest.Conn, proto, name string) {
	t.Helper()
	target := c.Target()
	if target == "" {
		t.Fatal("no target chosen")
	}
	c.End(s2c)
	c.End(c2s)
	c.ReadAll(c2s)
	c.ReadAll(s2c)
	c.Wait()
	for k, want := range map[string]string{"router.protocol": proto, "router.name": name, "router.target": target} {
		if got, _ := c.Tag(k); got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
}

func testRouter(t *testing.T, start sdktest.Starter, step int) {
	t.Run("ssh banner", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("ssh"), LateDial: true})
		c := p.Open()
		banner := "SSH-2.0-OpenSSH_9.6p1 Debian\r\n"
		c.Write(c2s, []byte(banner[:2]))
		c.Write(c2s, []byte(banner[2:]))
		if got := c.Read(c2s, len(banner)); string(got) != banner {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("SSH-2.0-server\r\n"))
		if got := c.Read(s2c, 16); string(got) != "SSH-2.0-server\r\n" {
			t.Fatalf("client got %q", got)
		}
		routed(t, c, "ssh", "")
	})
	t.Run("http by Host, port and case ignored, header split", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("http www"), LateDial: true})
		c := p.Open()
		req := "GET /index.html HTTP/1.1\r\nUser-Agent: test\r\nhOsT:  WWW.Example.org:8080 \r\nAccept: */*\r\n\r\n"
		c.Write(c2s, []byte(req[:30]))
		c.Write(c2s, []byte(req[30:55]))
		c.Write(c2s, []byte(req[55:]))
		if got := c.Read(c2s, len(req)); string(got) != req {
			t.Fatalf("server got %q", got)
		}
		routed(t, c, "http", "www.example.org")
	})
	t.Run("http without a matching Host: the http rule", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("http"), LateDial: true})
		c := p.Open()
		req := "POST /x HTTP/1.0\r\nHost: other.example.org\r\nContent-Length: 0\r\n\r\n"
		c.Write(c2s, []byte(req))
		if got := c.Read(c2s, len(req)); string(got) != req {
			t.Fatalf("server got %q", got)
		}
		routed(t, c, "http", "other.example.org")
	})
	t.Run("redis", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("redis"), LateDial: true})
		c := p.Open()
		c.Write(c2s, []byte("*1\r"))
		c.Write(c2s, []byte("\n$4\r\nPING\r\n"))
		if got := c.Read(c2s, 14); string(got) != "*1\r\n$4\r\nPING\r\n" {
			t.Fatalf("server got %q", got)
		}
		routed(t, c, "redis", "")
	})
	t.Run("unknown bytes: the default", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("default"), LateDial: true})
		c := p.Open()
		c.Write(c2s, []byte("hello\n"))
		if got := c.Read(c2s, 6); string(got) != "hello\n" {
			t.Fatalf("server got %q", got)
		}
		routed(t, c, "unknown", "")
	})
	t.Run("nothing sent in time: the timeout rule", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("timeout"), LateDial: true})
		c := p.Open()
		p.Advance(2 * time.Second)
		c.Write(s2c, []byte("220 smtp ready\r\n"))
		if got := c.Read(s2c, 16); string(got) != "220 smtp ready\r\n" {
			t.Fatalf("client got %q", got)
		}
		routed(t, c, "timeout", "")
	})
	t.Run("a partial banner at the timeout: the default, bytes kept", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("default"), LateDial: true})
		c := p.Open()
		c.Write(c2s, []byte("SS"))
		p.Advance(2 * time.Second)
		if got := c.Read(c2s, 2); string(got) != "SS" {
			t.Fatalf("server got %q", got)
		}
		c.Write(c2s, []byte("H-2.0-x\r\n"))
		if got := c.Read(c2s, 9); string(got) != "H-2.0-x\r\n" {
			t.Fatalf("server got %q", got)
		}
		routed(t, c, "unknown", "")
	})
	t.Run("Go crypto/tls ClientHello (post-quantum key share): SNI, exact name", func(t *testing.T) {
		hello := goClientHello(t, "Exact.Example.com")
		if !pqKeyShare(hello) {
			t.Fatalf("the Go client's hello (%d bytes) has no X25519MLKEM768 key share", len(hello))
		}
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("tls exact"), LateDial: true})
		c := p.Open()
		c.Write(c2s, hello)
		if got := c.Read(c2s, len(hello)); !bytes.Equal(got, hello) {
			t.Fatalf("server got %d bytes, not the hello", len(got))
		}
		routed(t, c, "tls", "exact.example.com")
	})
	t.Run("TLS wildcards: the longest suffix wins", func(t *testing.T) {
		for _, tc := range []struct{ sni, rule string }{
			{"a.example.com", "tls wildcard"},
			{"a.b.example.com", "tls wildcard"},
			{"x.deep.example.com", "tls deeper wildcard"},
			{"example.com", "tls"}, // "*.example.com" needs a label before
			{"", "tls"},            // no SNI
		} {
			p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig(tc.rule), LateDial: true})
			c := p.Open()
			hello := clientHello(tc.sni, 0)
			c.Write(c2s, hello)
			if got := c.Read(c2s, len(hello)); !bytes.Equal(got, hello) {
				t.Fatalf("%q: server got %d bytes, not the hello", tc.sni, len(got))
			}
			routed(t, c, "tls", tc.sni)
		}
	})
	t.Run("a 20 KiB ClientHello over two records in 1000-byte segments", func(t *testing.T) {
		hello := clientHello("big.example.com", 20<<10)
		if n := binary.BigEndian.Uint16(hello[3:]); n != 1<<14 {
			t.Fatalf("first record %d bytes: the hello should span records", n)
		}
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("tls wildcard"), LateDial: true})
		c := p.Open()
		stream := append(hello, "application data"...)
		for b := stream; len(b) > 0; {
			k := min(1000, len(b))
			c.Write(c2s, b[:k])
			b = b[k:]
		}
		if got := c.Read(c2s, len(stream)); sha256.Sum256(got) != sha256.Sum256(stream) {
			t.Fatalf("server got %d bytes, not the stream", len(got))
		}
		routed(t, c, "tls", "big.example.com")
	})
	t.Run("a ClientHello split at every offset", func(t *testing.T) {
		hello := clientHello("split.example.com", 300)
		// Also split into records: the handshake message over three.
		msg := hello[recordHeader:]
		var recs []byte
		for _, part := range [][]byte{msg[:2], msg[2:100], msg[100:]} {
			recs = append(recs, recordHandshake, 3, 1, 0, 0)
			binary.BigEndian.PutUint16(recs[len(recs)-2:], uint16(len(part)))
			recs = append(recs, part...)
		}
		p := sdktest.MustStart(t, start, sdktest.Options{Config: testConfig("tls wildcard"), LateDial: true})
		for _, h := range [][]byte{hello, recs} {
			for i := 1; i < len(h); i += step {
				c := p.Open()
				c.Write(c2s, h[:i])
				c.Write(c2s, h[i:])
				if got := c.Read(c2s, len(h)); !bytes.Equal(got, h) {
					t.Fatalf("split at %d: server got %d bytes, not the hello", i, len(got))
				}
				routed(t, c, "tls", "split.example.com")
			}
		}
	})
	t.Run("a ClientHello larger than max_bytes: TLS without a name", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: strings.Replace(testConfig("tls"), `"timeout": "2s"`, `"max_bytes": 4096, "timeout": "2s"`, 1), LateDial: true})
		c := p.Open()
		hello := clientHello("big.example.com", 8000)
		for b := hello; len(b) > 0; {
			k := min(1000, len(b))
			c.Write(c2s, b[:k])
			b = b[k:]
		}
		if got := c.Read(c2s, len(hello)); !bytes.Equal(got, hello) {
			t.Fatalf("server got %d bytes, not the hello", len(got))
		}
		routed(t, c, "tls", "")
	})
	t.Run("no rule and no default: closed", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"rules": [{"protocol": "ssh", "target": "` + sdktest.Server + `"}]}`, LateDial: true})
		c := p.Open()
		c.Write(c2s, []byte("GET / HTTP/1.1\r\nHost: a.b\r\n\r\n"))
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
		if got, _ := c.Tag("router.protocol"); got != "http" {
			t.Errorf("tag router.protocol = %q", got)
		}
		want := sdktest.Log{Level: sdk.LevelWarn, Msg: `router: no target for http "a.b" and no default: closing`}
		if logs := p.Logs(); len(logs) != 1 || logs[0] != want {
			t.Errorf("logs %q, want %q", logs, want)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `router: no rules and no default: configure e.g. {"rules": [{"protocol": "ssh", "target": "127.0.0.1:22"}], "default": "127.0.0.1:8080"}`},
			{`{"rules": [{"protocol": "ftp", "target": "a:1"}]}`, `router: rule 1: unknown protocol "ftp"; use one of tls, http, ssh, redis, unknown, timeout`},
			{`{"rules": [{"protocol": "ssh", "name": "a.b", "target": "a:1"}]}`, `router: rule 1: a name needs protocol "tls" (the SNI) or "http" (the Host header)`},
			{`{"rules": [{"protocol": "tls", "name": "a.*.b", "target": "a:1"}]}`, `router: rule 1: name "a.*.b": a wildcard is only allowed as "*.suffix"`},
			{`{"rules": [{"protocol": "tls", "target": "nohost"}]}`, `router: rule 1: target must be "host:port", not "nohost"`},
			{`{"default": "a:99999"}`, `router: default: target "a:99999": the port must be a number from 1 to 65535`},
			{`{"default": "a:1", "max_bytes": 10}`, `router: "max_bytes" must be from 64 to 1048576, not 10`},
			{`{"default": "a:1", "timeout": "never"}`, `router: "timeout" must be a positive duration such as "2s", not "never"`},
			{`{"default": "a:1", "rule": []}`, `router: config: unknown setting "rule"`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config, LateDial: true})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

// clientHello builds a TLS 1.3-style ClientHello record stream for sni
// ("" for none) with a padding extension of pad bytes, cut into records of
// at most 2^14 bytes.
func clientHello(sni string, pad int) []byte {
	var body []byte
	body = append(body, 3, 3)
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0x13, 0x01)    // TLS_AES_128_GCM_SHA256
	body = append(body, 1, 0)                // compression: null
	var exts []byte
	exts = append(exts, 0, 43, 0, 3, 2, 3, 4) // supported_versions: TLS 1.3
	if sni != "" {
		n := len(sni)
		exts = binary.BigEndian.AppendUint16(exts, extServerName)
		exts = binary.BigEndian.AppendUint16(exts, uint16(n+5))
		exts = binary.BigEndian.AppendUint16(exts, uint16(n+3))
		exts = append(exts, serverNameHost)
		exts = binary.BigEndian.AppendUint16(exts, uint16(n))
		exts = append(exts, sni...)
	}
	if pad > 0 {
		exts = binary.BigEndian.AppendUint16(exts, 21) // padding
		exts = binary.BigEndian.AppendUint16(exts, uint16(pad))
		exts = append(exts, make([]byte, pad)...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	msg := []byte{handshakeHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	msg = append(msg, body...)
	var out []byte
	for len(msg) > 0 {
		k := min(len(msg), 1<<14)
		out = append(out, recordHandshake, 3, 1)
		out = binary.BigEndian.AppendUint16(out, uint16(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return out
}

// goClientHello returns the first record a Go crypto/tls client with the
// default configuration sends for serverName.
func goClientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, &tls.Config{ServerName: serverName}).Handshake()
	}()
	b.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, recordHeader)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(b, rec); err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.Close()
	<-done
	return append(hdr, rec...)
}

// pqKeyShare reports whether a single-record ClientHello offers a key
// share of group X25519MLKEM768 (0x11ec, 1216 bytes).
func pqKeyShare(rec []byte) bool {
	r := reader{b: rec[recordHeader+handshakeHeader:]}
	r.skip(34)
	r.skip(int(r.u8()))
	r.skip(int(r.u16()))
	r.skip(int(r.u8()))
	exts := reader{b: r.bytes(int(r.u16()))}
	for !exts.bad && len(exts.b) >= 4 {
		typ, body := exts.u16(), reader{b: exts.bytes(int(exts.u16()))}
		if typ != 51 { // key_share
			continue
		}
		shares := reader{b: body.bytes(int(body.u16()))}
		for !shares.bad && len(shares.b) >= 4 {
			group, key := shares.u16(), shares.bytes(int(shares.u16()))
			if group == 0x11ec && len(key) == 1216 {
				return true
			}
		}
	}
	return false
}
