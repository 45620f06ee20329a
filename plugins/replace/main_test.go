package main

import (
	"bytes"
	"math/rand/v2"
	"testing"

	hostplugin "github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

const (
	c2s = sdk.ClientToServer
	s2c = sdk.ServerToClient
)

func TestNative(t *testing.T) { testReplace(t, sdktest.Native) }

func testReplace(t *testing.T, start sdktest.Starter) {
	t.Run("single rule, both directions", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"from":"foo","to":"quux"}`})
		c := p.Open()
		c.Write(c2s, []byte("a foo b foo"))
		if got := c.Read(c2s, 13); string(got) != "a quux b quux" {
			t.Fatalf("got %q", got)
		}
		c.Write(s2c, []byte("foofoo"))
		c.End(s2c)
		if got := c.ReadAll(s2c); string(got) != "quuxquux" {
			t.Fatalf("got %q", got)
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("extra %q", got)
		}
	})
	t.Run("split across chunks, held tail flushed at end", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"rules":[{"from":"password","to":"********"},{"from":"pass","to":"p"}]}`})
		c := p.Open()
		for _, s := range []string{"my pa", "ssw", "ord is pa", "ss", "wo"} {
			c.Write(c2s, []byte(s))
		}
		// "pas" could still become "password": only "my ******** is p" is decided... but "pass" then "wo":
		got := c.Read(c2s, len("my ******** is "))
		if string(got) != "my ******** is " {
			t.Fatalf("got %q", got)
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "pwo" {
			t.Fatalf("at end got %q, want %q", got, "pwo")
		}
	})
	t.Run("shorter, longer, deletion, hex, ignore case", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"ignore_case":true,"rules":[
			{"from":"Hello","to":"Hi"},
			{"from":"x","to":"xyz"},
			{"from":"drop-me"},
			{"from_hex":"00ff","to_hex":"0a"}]}`})
		c := p.Open()
		c.Write(c2s, []byte("HELLO x DROP-ME\x00\xffend"))
		c.End(c2s)
		if got := c.ReadAll(c2s); string(got) != "Hi xyz \nend" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("300 KiB of random data chunked arbitrarily", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"rules":[{"from":"abc","to":"Z"},{"from":"ZZ","to":"abcabc"}]}`})
		r := rand.New(rand.NewPCG(5, 6))
		in := make([]byte, 300<<10)
		for i := range in {
			in[i] = "abcZ"[r.IntN(4)]
		}
		want := oneShot(in)
		c := p.Open()
		for rest := in; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(40<<10))
			c.Write(c2s, rest[:k])
			rest = rest[k:]
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
		}
	})
	t.Run("connections keep their own tails", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"from":"secret","to":"[redacted]"}`})
		a, b := p.Open(), p.Open()
		a.Write(c2s, []byte("top sec"))
		b.Write(c2s, []byte("sec"))
		b.Write(c2s, []byte("ond"))
		a.Write(c2s, []byte("ret"))
		a.End(c2s)
		b.End(c2s)
		if got := a.ReadAll(c2s); string(got) != "top [redacted]" {
			t.Fatalf("a got %q", got)
		}
		if got := b.ReadAll(c2s); string(got) != "second" {
			t.Fatalf("b got %q", got)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `replace: no rule: set "from" and "to", or "rules" = [{ from = "...", to = "..." }, ...]`},
			{`{"from":""}`, `replace: "from" is empty`},
			{`{"rules":[{"from":"a","to":"b"},{"from":"","to":"x"}]}`, `replace: rule 2: "from" is empty`},
			{`{"rules":[{"from":"a"},{"to":"x"}]}`, `replace: rule 2: "from" is missing`},
			{`{"from":"a","rules":[{"from":"b"}]}`, `replace: give either "from"/"to" or "rules", not both`},
			{`{"rules":[{"from":"ab"},{"from":"AB"}],"ignore_case":true}`, `replace: rule 2: "from" "AB" is the same as in rule 1, which always wins`},
			{`{"from":"a","too":"b"}`, `replace: config: unknown setting "too"`},
			{`{"from":1}`, `replace: config: "from" must be a string, got a JSON number`},
			{`{"from_hex":"zz"}`, `replace: "from_hex" is not hex: encoding/hex: invalid byte: U+007A 'z'`},
			{`{"from":"a","from_hex":"61"}`, `replace: give "from" or "from_hex", not both`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}

// oneShot applies the rules of the sha256 test to the whole input at once.
func oneShot(in []byte) []byte {
	var out []byte
	for i := 0; i < len(in); {
		switch {
		case bytes.HasPrefix(in[i:], []byte("abc")):
			out = append(out, 'Z')
			i += 3
		case bytes.HasPrefix(in[i:], []byte("ZZ")):
			out = append(out, "abcabc"...)
			i += 2
		default:
			out = append(out, in[i])
			i++
		}
	}
	return out
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestWasm(t *testing.T) { testReplace(t, plugintest.Wasm(t, ".")) }

// TestWasmPool runs the same tests with connections spread over several
// instances, as in production.
func TestWasmPool(t *testing.T) {
	testReplace(t, plugintest.WasmWith(t, ".", plugintest.Options{Plugin: hostplugin.Options{Instances: 3}}))
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
