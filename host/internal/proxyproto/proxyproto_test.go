package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	src4 = netip.MustParseAddrPort("192.168.0.1:56324")
	dst4 = netip.MustParseAddrPort("192.168.0.11:443")
	max6 = netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
)

// The v1 examples of the specification (section 2.1), byte for byte.
func TestV1SpecExamples(t *testing.T) {
	max4 := netip.MustParseAddrPort("255.255.255.255:65535")
	for _, c := range []struct {
		h    Header
		want string
	}{
		{Header{Command: Proxy, Source: src4, Destination: dst4}, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"},
		{Header{Command: Proxy, Source: max4, Destination: max4}, "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"},
		{Header{Command: Proxy, Source: max6, Destination: max6}, "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"},
		{Header{Command: Proxy}, "PROXY UNKNOWN\r\n"},
		{Header{Command: Local, Source: src4, Destination: dst4}, "PROXY UNKNOWN\r\n"},
	} {
		got := AppendV1([]byte("x"), c.h)
		if string(got) != "x"+c.want {
			t.Errorf("AppendV1(%+v) = %q, want %q", c.h, got[1:], c.want)
		}
		h, n, err := Parse(strings.NewReader(c.want + "GET / HTTP/1.1\r\n"))
		if err != nil || n != len(c.want) {
			t.Fatalf("Parse(%q) = n %d, %v; want n %d", c.want, n, err, len(c.want))
		}
		if c.h.Command == Proxy && (h.Source != c.h.Source || h.Destination != c.h.Destination) {
			t.Errorf("Parse(%q) = %v -> %v", c.want, h.Source, h.Destination)
		}
	}
	// The longest v1 header of the specification: 107 bytes, addresses
	// ignored after UNKNOWN.
	worst := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	if len(worst) != MaxV1 {
		t.Fatalf("the worst case is %d bytes", len(worst))
	}
	h, n, err := Parse(strings.NewReader(worst + "rest"))
	if err != nil || n != MaxV1 || h.Source.IsValid() || h.Version != 1 {
		t.Fatalf("Parse(worst case) = %+v, %d, %v", h, n, err)
	}
}

// v2 headers written byte for byte from the specification's layout
// (section 2.2): signature, \x21 (v2, PROXY), family and protocol, length,
// addresses, ports, TLVs.
func TestV2Bytes(t *testing.T) {
	sig := "0d0a0d0a 000d0a51 5549540a"
	for _, c := range []struct {
		name string
		h    Header
		want string
	}{
		{"tcp4", Header{Command: Proxy, Source: src4, Destination: dst4},
			sig + "21 11 000c c0a80001 c0a8000b dc04 01bb"},
		{"tcp6", Header{Command: Proxy, Source: netip.MustParseAddrPort("[2001:db8::1]:1234"), Destination: netip.MustParseAddrPort("[2001:db8::2]:80")},
			sig + "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 04d2 0050"},
		{"local", Header{Command: Local, Source: src4, Destination: dst4},
			sig + "20 00 0000"},
		{"unknown", Header{Command: Proxy},
			sig + "21 00 0000"},
		{"udp4", Header{Command: Proxy, Transport: TransportDgram, Source: src4, Destination: dst4},
			sig + "21 12 000c c0a80001 c0a8000b dc04 01bb"},
		{"tls", Header{Command: Proxy, Source: src4, Destination: dst4, ALPN: "h2", Authority: "example.com",
			SSL: &SSL{Client: ClientSSL, Verify: 1, Version: "TLSv1.3"}},
			sig + "21 11 0031 c0a80001 c0a8000b dc04 01bb" +
				"01 0002 6832" + // ALPN h2
				"02 000b 6578616d706c652e636f6d" + // AUTHORITY example.com
				"20 000f 01 00000001 21 0007 544c5376312e33"}, // SSL: client, verify, VERSION TLSv1.3
	} {
		t.Run(c.name, func(t *testing.T) {
			want := mustHex(t, c.want)
			got := AppendV2([]byte{0xaa}, c.h)
			if !bytes.Equal(got[1:], want) || got[0] != 0xaa {
				t.Fatalf("AppendV2 =\n% x\nwant\n% x", got[1:], want)
			}
			h, n, err := Parse(io.MultiReader(bytes.NewReader(want), strings.NewReader("payload")))
			if err != nil || n != len(want) {
				t.Fatalf("Parse = n %d, %v; want n %d", n, err, len(want))
			}
			wantH := c.h
			wantH.Version = 2
			if wantH.Command == Local {
				wantH.Source, wantH.Destination = netip.AddrPort{}, netip.AddrPort{}
			}
			if wantH.Source.IsValid() && wantH.Transport == TransportUnspec {
				wantH.Transport = TransportStream
			}
			if !reflect.DeepEqual(h, wantH) {
				t.Fatalf("Parse =\n%+v\nwant\n%+v", h, wantH)
			}
		})
	}
}

// Parse reads no byte past the header, whatever the reader, so the bytes
// after it are the client's.
func TestParseStopsAtTheHeader(t *testing.T) {
	for _, hdr := range [][]byte{
		AppendV1(nil, Header{Command: Proxy, Source: src4, Destination: dst4}),
		AppendV1(nil, Header{Command: Proxy, Source: max6, Destination: max6}),
		[]byte("PROXY UNKNOWN\r\n"),
		AppendV2(nil, Header{Command: Proxy, Source: src4, Destination: dst4, Authority: "a.example"}),
		AppendV2(nil, Header{Command: Local}),
	} {
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"reader":   func(r io.Reader) io.Reader { return r },
			"onebyte":  iotest.OneByteReader,
			"halfread": iotest.HalfReader,
			"bytes":    func(r io.Reader) io.Reader { return bytes.NewBuffer(mustRead(t, r)) }, // an io.ByteReader
		} {
			r := io.MultiReader(bytes.NewReader(hdr), strings.NewReader("REST"))
			rr := wrap(readerOnly{r})
			_, n, err := Parse(rr)
			if err != nil || n != len(hdr) {
				t.Fatalf("%s: Parse(%q) = %d, %v", name, hdr, n, err)
			}
			rest, _ := io.ReadAll(rr)
			if string(rest) != "REST" {
				t.Fatalf("%s: after %q the reader holds %q, want REST", name, hdr, rest)
			}
		}
	}
}

type readerOnly struct{ io.Reader }

func mustRead(t *testing.T, r io.Reader) []byte {
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Malformed headers: an error that says what is wrong.
func TestParseErrors(t *testing.T) {
	sig := Signature
	v4 := "\x21\x11\x00\x0c" + "\xc0\xa8\x00\x01\xc0\xa8\x00\x0b\xdc\x04\x01\xbb"
	for _, c := range []struct{ in, want string }{
		{"", "ended before any byte"},
		{"GET / HTTP/1.1\r\n", "no PROXY protocol header: the first byte is 'G'"},
		{"PRIXY TCP4", `no PROXY protocol header: the connection starts with "PRIXY "`},
		{"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", `unknown protocol "TCP5"`},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n\r\n", "a line feed without a carriage return"},
		{"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "7 fields"},
		{"PROXY UNKNOWNX 1.2.3.4 1.2.3.4 1 2\r\n", `unknown protocol "UNKNOWNX"`},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\nxxxxxxxxxx", "5 fields"},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "5 fields"},
		{"PROXY TCP4 1.2.3.400 1.2.3.4 1 2\r\n", `bad source address "1.2.3.400"`},
		{"PROXY TCP4 ::1 1.2.3.4 1 2 \r\n", "7 fields"},
		{"PROXY TCP4 ::1 1.2.3.4 1 2222\r\n", `source address "::1" is not TCP4`},
		{"PROXY TCP6 ::1 1.2.3.4 1 2222\r\n", `destination address "1.2.3.4" is not TCP6`},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", `bad source port "65536"`},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", `bad source port "01"`},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 -2\r\n", `bad destination port "-2"`},
		{"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rx\r\n", `a stray '\r'`},
		{"PROXY UNKNOWN " + strings.Repeat("x", 200), "no CRLF in the first 107 bytes"},
		{"PROXY TCP4 1.2.3.4", "ended inside the header after 18 bytes"},
		{"\r\n\r\n\x00\r\nQUIX\n" + v4, "are not the v2 signature"},
		{sig + "\x11\x11\x00\x0c" + v4[4:], "version 1 in byte 13 (0x11), want 2"},
		{sig + "\x22\x11\x00\x0c" + v4[4:], "unknown command 2"},
		{sig + "\x21\x41\x00\x0c" + v4[4:], "unknown address family or protocol 0x41"},
		{sig + "\x21\x21\x00\x0c" + v4[4:], "too short for the addresses of family 2 (36 bytes)"},
		{sig + "\x21\x11\x00\x0e" + v4[4:] + "\x02\x00", "2 stray bytes at offset 28"},
		{sig + "\x21\x11\x00\x10" + v4[4:] + "\x02\x00\x05x", "TLV of type 0x02 at offset 28 claims 5 bytes, 1 left"},
		{sig + "\x21\x11\x00\x10" + v4[4:] + "\x02\x00\x01\xff", "PP2_TYPE_AUTHORITY \"\\xff\" is not UTF-8"},
		{sig + "\x21\x11\x00\x11" + v4[4:] + "\x20\x00\x02\x01\x00", "PP2_TYPE_SSL: 2 bytes, want at least 5"},
		{sig + "\x21\x11\x00\x13" + v4[4:] + "\x03\x00\x04\x00\x00\x00\x00", "PP2_TYPE_CRC32C is 0x00000000, the header's is"},
		{sig + "\x21\x11\x00\x20" + v4[4:], "ended inside the header after 28 bytes"},
	} {
		_, n, err := Parse(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", c.in, err, c.want)
		}
		if n > len(c.in) || n > MaxV2 {
			t.Errorf("Parse(%q) read %d bytes", c.in, n)
		}
	}
	_, _, err := Parse(strings.NewReader("HELO"))
	if !errors.Is(err, ErrNoHeader) {
		t.Errorf("Parse(HELO) = %v, want ErrNoHeader", err)
	}
	_, _, err = Parse(iotest.ErrReader(io.ErrClosedPipe))
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("a reader's error is not wrapped: %v", err)
	}
}

// A PP2_TYPE_CRC32C that matches is accepted (and not kept in Extra);
// LOCAL discards an unknown family; unknown TLVs are kept in order.
func TestV2CRCAndExtra(t *testing.T) {
	b := AppendV2(nil, Header{Command: Proxy, Source: src4, Destination: dst4,
		Extra: []TLV{{Type: TypeUniqueID, Value: []byte("id-1")}, {Type: TypeNoop}, {Type: TypeCRC32C, Value: []byte{1, 2, 3, 4}}}})
	// Append a CRC32C TLV by hand and fix the length.
	b = append(b, TypeCRC32C, 0, 4, 0, 0, 0, 0)
	b[15] += 7
	crc := crcOf(b)
	copy(b[len(b)-4:], crc)
	h, _, err := Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := []TLV{{Type: TypeUniqueID, Value: []byte("id-1")}, {Type: TypeNoop, Value: []byte{}}}
	if !reflect.DeepEqual(h.Extra, want) {
		t.Fatalf("Extra = %+v, want %+v", h.Extra, want)
	}
	b[len(b)-1] ^= 1
	if _, _, err := Parse(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "CRC32C") {
		t.Fatalf("a wrong CRC: %v", err)
	}
	local := []byte(Signature + "\x20\xff\x00\x03abc")
	h, n, err := Parse(bytes.NewReader(local))
	if err != nil || n != len(local) || h.Command != Local {
		t.Fatalf("LOCAL with an unknown family = %+v, %d, %v", h, n, err)
	}
}

func crcOf(b []byte) []byte {
	var out [4]byte
	c := crc32c(b)
	out[0], out[1], out[2], out[3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return out[:]
}

// A header is never longer than MaxV2: TLVs that do not fit are left out.
func TestAppendV2Bounded(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 40000)
	b := AppendV2(nil, Header{Command: Proxy, Source: src4, Destination: dst4,
		Extra: []TLV{{Type: 0xe0, Value: big}, {Type: 0xe1, Value: big}, {Type: 0xe2, Value: []byte("small")}}})
	h, n, err := Parse(bytes.NewReader(b))
	if err != nil || n != len(b) || n > MaxV2 {
		t.Fatalf("Parse = %d, %v", n, err)
	}
	if len(h.Extra) != 2 || h.Extra[0].Type != 0xe0 || h.Extra[1].Type != 0xe2 {
		t.Fatalf("kept %d TLVs", len(h.Extra))
	}
}

// Whatever Parse accepts, AppendV1 or AppendV2 writes again, and Parse
// reads back to the same header and bytes; nothing panics, and Parse never
// reads past the header or its limits.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /"))
	f.Add([]byte("PROXY TCP6 ::1 ::2 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(AppendV2(nil, Header{Command: Proxy, Source: src4, Destination: dst4, ALPN: "h2", Authority: "a.example",
		SSL: &SSL{Client: 7, Version: "TLSv1.2", CN: "c", Extra: []TLV{{Type: 0x26, Value: []byte("z")}}}}))
	f.Add(AppendV2(nil, Header{Command: Proxy, Source: max6, Destination: src4}))
	f.Add(AppendV2(nil, Header{Command: Local}))
	f.Add([]byte(Signature + "\x21\x31\x00\xd8" + strings.Repeat("u", 216)))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := Parse(bytes.NewReader(data))
		if n > len(data) || n > MaxV2 {
			t.Fatalf("read %d of %d bytes", n, len(data))
		}
		if err != nil {
			return
		}
		if h.Version == 1 && n > MaxV1 {
			t.Fatalf("a v1 header of %d bytes", n)
		}
		app := AppendV2
		if h.Version == 1 {
			app = AppendV1
		}
		b1 := app(nil, h)
		h2, n2, err := Parse(bytes.NewReader(b1))
		if err != nil || n2 != len(b1) {
			t.Fatalf("%q: written %q reads back as %v (n %d)", data[:n], b1, err, n2)
		}
		if h2.Source.Addr().Unmap() != h.Source.Addr().Unmap() || h2.Source.Port() != h.Source.Port() ||
			h2.Destination.Addr().Unmap() != h.Destination.Addr().Unmap() || h2.Destination.Port() != h.Destination.Port() ||
			h2.Command != h.Command || h2.ALPN != h.ALPN || h2.Authority != h.Authority {
			t.Fatalf("%q: %+v read back as %+v", data[:n], h, h2)
		}
		if b2 := app(nil, h2); !bytes.Equal(b1, b2) {
			t.Fatalf("%q: written twice differently:\n%q\n%q", data[:n], b1, b2)
		}
	})
}
