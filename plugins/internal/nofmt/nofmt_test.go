package nofmt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
)

// Every byte formats exactly as fmt's %#U formats it as a rune: the
// printable ones quoted (Latin-1 included), the controls, DEL, U+0080-U+00A0
// and the soft hyphen without.
func TestUnicodeSharpMatchesFmt(t *testing.T) {
	for b := 0; b < 256; b++ {
		if got, want := unicodeSharp(byte(b)), fmt.Sprintf("%#U", rune(b)); got != want {
			t.Errorf("byte %#x: %q, fmt says %q", b, got, want)
		}
	}
	if got := unicodeSharp('z'); got != "U+007A 'z'" {
		t.Errorf("z: %q", got)
	}
	if got := unicodeSharp(0xe9); got != "U+00E9 'é'" {
		t.Errorf("0xe9: %q", got)
	}
	if got := unicodeSharp('\n'); got != "U+000A" {
		t.Errorf("newline: %q", got)
	}
}

// DecodeHex returns what encoding/hex.DecodeString returns, bytes and error
// text, for valid input, every single invalid byte in either position, odd
// lengths and both problems at once.
func TestDecodeHexMatchesEncodingHex(t *testing.T) {
	inputs := []string{"", "00", "0aFf", "deadBEEF", "0", "abc", "zz", "a", "g", "0g", "g0", "0z1", "00z", "00 ", "\xff0", "é0", "\x00\x00", "ab\n"}
	for b := 0; b < 256; b++ {
		inputs = append(inputs, string([]byte{byte(b), '0'}), string([]byte{'0', byte(b)}), string([]byte{'1', '2', byte(b)}))
	}
	for _, in := range inputs {
		want, wantErr := hex.DecodeString(in)
		got, err := DecodeHex(in)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("%q: error %v, encoding/hex says %v", in, err, wantErr)
			continue
		}
		if err == nil && string(got) != string(want) {
			t.Errorf("%q: %x, encoding/hex says %x", in, got, want)
		}
	}
	if _, err := DecodeHex("replace z"); err == nil || err.Error() != "encoding/hex: invalid byte: U+0072 'r'" {
		t.Errorf("got %v", err)
	}
	if _, err := DecodeHex("abc"); !errors.Is(err, ErrLength) {
		t.Errorf("odd length: %v", err)
	}
}

func TestWrap(t *testing.T) {
	err := Wrap("codec", io.ErrUnexpectedEOF)
	if got, want := err.Error(), fmt.Errorf("codec: %w", io.ErrUnexpectedEOF).Error(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("Wrap does not unwrap to the cause")
	}
}

// SplitHostPort accepts what net.SplitHostPort accepts, with the same host
// and port, and rejects the rest.
func TestSplitHostPortMatchesNet(t *testing.T) {
	inputs := []string{
		"127.0.0.1:80", "[::1]:443", "[fe80::1%eth0]:22", "example.com:8080", "host:", ":80", ":", "",
		"127.0.0.1", "::1", "[::1]", "[::1]80", "[::1]:80:", "[::1", "::1]:80", "a:b:c", "[a]:b]:c",
		"[a[b]:1", "a[b:1", "a]b:1", "[a]b:1", "[]:1", "[a]]:1", "[[a]:1", "x:[1", "x:1]", "日本:1",
	}
	for _, in := range inputs {
		wantHost, wantPort, err := net.SplitHostPort(in)
		host, port, ok := SplitHostPort(in)
		if ok != (err == nil) || host != wantHost || port != wantPort {
			t.Errorf("%q: %q %q %v, net says %q %q %v", in, host, port, ok, wantHost, wantPort, err)
		}
	}
}
