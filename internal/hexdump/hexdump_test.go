package hexdump

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestHexMatchesEncodingHexDump(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 70; n++ {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.IntN(256))
		}
		got := string(Hex(nil, data))
		want := hex.Dump(data) // same layout as hexdump -C
		if got != want {
			t.Fatalf("n=%d:\n got %q\nwant %q", n, got, want)
		}
	}
}

func TestHexExample(t *testing.T) {
	got := string(Hex(nil, []byte("Hello\n")))
	want := "00000000  48 65 6c 6c 6f 0a                                 |Hello.|\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHexAtOffsets(t *testing.T) {
	got := string(HexAt([]byte("x:"), 0x10, []byte("Hello world\n")))
	want := "x:00000010  48 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |Hello world.|\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	big := string(HexAt(nil, 0x1_0000_0000, []byte{0}))
	if !strings.HasPrefix(big, "100000000  00 ") {
		t.Fatalf("offset past 32 bits: %q", big)
	}
	got = string(HexAt(nil, 0xfffffff8, bytes.Repeat([]byte{'a'}, 9)))
	want = "fffffff8  61 61 61 61 61 61 61 61  61                       |aaaaaaaaa|\n"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\\r\\n\nHost: x\\r\\n\n\\r\\n\n"},
		{"abc", "abc\n"},
		{"a\tb\\c", "a\\tb\\\\c\n"},
		{"\x1b[2J\x00\x7f\xff", "\\x1b[2J\\x00\\x7f\\xff\n"},
		{"é", "\\xc3\\xa9\n"},
	}
	for _, c := range cases {
		if got := string(Text(nil, []byte(c.in))); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestOutputIsPrintable(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for name, out := range map[string][]byte{"hex": Hex(nil, all), "text": Text(nil, all)} {
		for _, b := range out {
			if b != '\n' && (b < 0x20 || b > 0x7e) {
				t.Fatalf("%s output holds byte %#x", name, b)
			}
		}
	}
}

func TestHeader(t *testing.T) {
	cases := []struct {
		got, want string
	}{
		{string(Header(nil, 7, ClientToServer, 6)), "#7 client -> server 6 bytes\n"},
		{string(Header(nil, 18446744073709551615, ServerToClient, 1)), "#18446744073709551615 server -> client 1 byte\n"},
		{string(Header(nil, 0, ServerToClient, 0)), "#0 server -> client 0 bytes\n"},
		{string(Header(nil, 3, 9, 65536)), "#3 invalid direction 65536 bytes\n"},
		{string(End(nil, 12, ServerToClient)), "#12 server -> client end\n"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	data := bytes.Repeat([]byte("Hello, world!\r\n\x00"), 64)
	buf := make([]byte, 0, 1<<16)
	allocs := testing.AllocsPerRun(100, func() {
		buf = Header(buf[:0], 99, ServerToClient, len(data))
		buf = Hex(buf, data)
		buf = Text(buf, data)
		buf = End(buf, 99, ClientToServer)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}

func BenchmarkHex(b *testing.B) {
	data := make([]byte, 16<<10)
	buf := make([]byte, 0, 128<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		buf = Hex(buf[:0], data)
	}
}

func BenchmarkText(b *testing.B) {
	data := bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 1024)
	buf := make([]byte, 0, 128<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		buf = Text(buf[:0], data)
	}
}

// TestTextCannotForgeHeaders: no line of a text dump starts with '#', the
// first byte of every header and end line, so a peer cannot make its data
// pass for a chunk header or an end of another connection or direction.
func TestTextCannotForgeHeaders(t *testing.T) {
	for _, in := range []string{
		"#1 client -> server end",
		"bye\n#1 client -> server end",
		"x\n#7 server -> client 21 bytes\nsecret",
		"a#b\n\n#",
	} {
		out := string(Text(nil, []byte(in)))
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if strings.HasPrefix(line, "#") {
				t.Errorf("Text(%q) has the line %q, which reads as the dump's own", in, line)
			}
		}
	}
	if got, want := string(Text(nil, []byte("#1\n#2 a#b"))), "\\x231\\n\n\\x232 a#b\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
