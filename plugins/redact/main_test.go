package main

import (
	"bytes"
	"strings"
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

func TestNative(t *testing.T) { testRedact(t, sdktest.Native, 1) }

// TestWasm runs the same tests through a real tunnel, every 3rd split
// offset (each is a connection).
func TestWasm(t *testing.T) { testRedact(t, plugintest.Wasm(t, "."), 3) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// input holds every kind of secret, and near misses.
const input = "POST /pay HTTP/1.1\r\nAuthorization: Bearer eyJhbGciOi.J9x_y-z~a+b/c==\r\n" +
	"card=4111 1111 1111 1111&alt=5500-0000-0000-0004;bad=4111111111111112;" +
	"long=41111111111111111111111;id=A4111111111111111;key=sk_live_abc123XYZ&pw=hunter2!\r\n"

const masked = "POST /pay HTTP/1.1\r\nAuthorization: Bearer **************************\r\n" +
	"card=**** **** **** 1111&alt=****-****-****-0004;bad=4111111111111112;" +
	"long=41111111111111111111111;id=A4111111111111111;key=sk_live_*********&pw=*******!\r\n"

const replaced = "POST /pay HTTP/1.1\r\nAuthorization: Bearer [redacted]\r\n" +
	"card=[redacted]&alt=[redacted];bad=4111111111111112;" +
	"long=41111111111111111111111;id=A4111111111111111;key=sk_live_[redacted]&pw=[redacted]!\r\n"

const allConfig = `{"cards": true, "card_keep_last": 4, "bearer": true, "prefixes": ["sk_live_"], "literals": ["hunter2"]}`

func testRedact(t *testing.T, start sdktest.Starter, step int) {
	t.Run("bearer: more than one space before the token", func(t *testing.T) {
		// RFC 9110: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ].
		in := "Authorization: Bearer   eyJhbGciOi.J9x\r\nX: bearer  \r\n"
		want := "Authorization: Bearer   **************\r\nX: bearer  \r\n"
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"bearer": true}`})
		for i := 0; i < len(in); i += step {
			c := p.Open()
			c.Write(c2s, []byte(in[:i]))
			c.Write(c2s, []byte(in[i:]))
			c.End(c2s)
			c.End(s2c)
			if got := c.ReadAll(c2s); string(got) != want {
				t.Fatalf("split at %d: server got\n%q\nwant\n%q", i, got, want)
			}
			c.ReadAll(s2c)
			c.Wait()
		}
	})
	t.Run("length kept, both directions, split at every offset", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: allConfig})
		for i := 0; i < len(input); i += step {
			c := p.Open()
			c.Write(c2s, []byte(input[:i]))
			c.Write(c2s, []byte(input[i:]))
			c.Write(s2c, []byte(input[:len(input)-i]))
			c.Write(s2c, []byte(input[len(input)-i:]))
			c.End(c2s)
			c.End(s2c)
			if got := c.ReadAll(c2s); string(got) != masked {
				t.Fatalf("split at %d: server got\n%q\nwant\n%q", i, got, masked)
			}
			if got := c.ReadAll(s2c); string(got) != masked {
				t.Fatalf("split at %d: client got\n%q\nwant\n%q", len(input)-i, got, masked)
			}
			c.Wait()
			if v, _ := c.Tag("redact.count"); v != "10" {
				t.Fatalf("split at %d: tag redact.count = %q, want 10", i, v)
			}
		}
	})
	t.Run("a card number with another number after or before it, split at every offset", func(t *testing.T) {
		// A card followed by a quantity or a CVV, or after one, with a
		// separator between them: the card stands alone, and is masked.
		in := "4111111111111111 5 items;cvv 4111 1111 1111 1111 123;2 4111111111111111;" +
			"5500-0000-0000-0004-7;4111 1111 1111 1111 1111;41111111111111111111 4111111111111111;1234 5678\n"
		want := "**************** 5 items;cvv **** **** **** **** 123;2 ****************;" +
			"****-****-****-****-7;**** **** **** **** 1111;41111111111111111111 ****************;1234 5678\n"
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"cards": true}`})
		for i := 0; i < len(in); i += step {
			c := p.Open()
			c.Write(s2c, []byte(in[:i]))
			c.Write(s2c, []byte(in[i:]))
			c.End(s2c)
			c.End(c2s)
			if got := c.ReadAll(s2c); string(got) != want {
				t.Fatalf("split at %d: client got\n%q\nwant\n%q", i, got, want)
			}
			c.Wait()
			if v, _ := c.Tag("redact.count"); v != "6" {
				t.Fatalf("split at %d: tag redact.count = %q, want 6", i, v)
			}
		}
	})
	t.Run("replaced, in three pieces at every pair of offsets", func(t *testing.T) {
		cfg := strings.Replace(allConfig, `"card_keep_last": 4, `, `"replacement": "[redacted]", `, 1)
		p := sdktest.MustStart(t, start, sdktest.Options{Config: cfg})
		s, want := input[20:], replaced[20:]
		for i := 0; i < len(s); i += step * 4 {
			for j := i; j < len(s); j += step * 4 {
				c := p.Open()
				c.Write(s2c, []byte(s[:i]))
				c.Write(s2c, []byte(s[i:j]))
				c.Write(s2c, []byte(s[j:]))
				c.End(s2c)
				c.End(c2s)
				if got := c.ReadAll(s2c); string(got) != want {
					t.Fatalf("split at %d, %d: client got\n%q\nwant\n%q", i, j, got, want)
				}
				c.Wait()
			}
		}
	})
	t.Run("one byte at a time; a long token streams", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: allConfig})
		c := p.Open()
		token := strings.Repeat("Ab0-", 5000) // 20000 bytes: masked as it streams
		msg := "x Bearer " + token + " 4111-1111-1111-1111\n"
		for k := range len(msg) / 100 {
			c.Write(c2s, []byte(msg[k*100:k*100+100]))
		}
		c.Write(c2s, []byte(msg[len(msg)/100*100:]))
		want := "x Bearer " + strings.Repeat("*", len(token)) + " ****-****-****-1111\n"
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %d bytes: %q...", len(got), got[:min(len(got), 60)])
		}
		for _, b := range []byte("pw hunter2 and 4111111111111111\n") {
			c.Write(c2s, []byte{b})
		}
		want = "pw ******* and ************1111\n"
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		c.End(c2s)
		c.End(s2c)
		c.ReadAll(c2s)
		c.Wait()
	})
	t.Run("held bytes are passed at the end of the stream", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: allConfig})
		c := p.Open()
		c.Write(c2s, []byte("tail 4111 1111 hun"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "tail 4111 1111 hun" {
			t.Fatalf("server got %q", got)
		}
		c.End(s2c)
		c.Wait()
	})
	t.Run("from client only; case-insensitive literals; another mask", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"from": "client", "literals": ["Secret"], "ignore_case": true, "mask": "#"}`})
		c := p.Open()
		c.Write(c2s, []byte("a SECRET, a secret"))
		c.Write(s2c, []byte("a SECRET"))
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(c2s); string(got) != "a ######, a ######" {
			t.Fatalf("server got %q", got)
		}
		if got := c.ReadAll(s2c); string(got) != "a SECRET" {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `redact: nothing to redact: set "cards", "bearer", "prefixes" or "literals", e.g. {"cards": true, "bearer": true}`},
			{`{"cards": true, "from": "up"}`, `redact: "from" must be "client", "server" or "both", not "up"`},
			{`{"cards": true, "card_keep_last": 7}`, `redact: "card_keep_last" must be from 0 to 6, not 7`},
			{`{"bearer": true, "card_keep_last": 4}`, `redact: "card_keep_last" needs "cards": true`},
			{`{"cards": true, "mask": "**"}`, `redact: "mask" must be one byte, not "**"`},
			{`{"literals": ["a", ""]}`, `redact: literal 2 is empty`},
			{`{"prefixes": ["` + strings.Repeat("p", 300) + `"]}`, `redact: prefix 1 is longer than 256 bytes`},
			{`{"card": true}`, `redact: config: unknown setting "card"`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

// TestScanBounded: what a stream holds back stays small, whatever comes.
func TestScanBounded(t *testing.T) {
	pl, err := newPlugin([]byte(allConfig))
	if err != nil {
		t.Fatal(err)
	}
	p := pl.(*plugin)
	var st stream
	var buf buffers
	worst := 0
	for _, s := range []string{strings.Repeat("4 ", 10000), strings.Repeat("1", 10000), strings.Repeat("sk_live", 1000), strings.Repeat("hunter", 1000)} {
		for k := 0; k < len(s); k += 3 {
			p.scan(&st, []byte(s[k:min(len(s), k+3)]), false, &buf)
			worst = max(worst, len(st.pend))
		}
	}
	if worst > 2*maxCard {
		t.Errorf("held up to %d bytes, want at most %d", worst, 2*maxCard)
	}
	out, _, _ := p.scan(&st, nil, true, &buf)
	if bytes.ContainsAny(out, "*") && len(out) > 2*maxCard {
		t.Errorf("end flushed %q", out)
	}
}
