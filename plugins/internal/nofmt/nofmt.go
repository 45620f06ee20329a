// Package nofmt holds the few helpers the built-in plugins would otherwise
// take from fmt, encoding/hex and net. A wasm guest that links fmt is about
// 0.75 MB larger (net about 0.27 MB), and the host compiles every embedded
// guest at each start, so the plugins build their messages with strconv and
// these helpers; the texts and results stay byte for byte what fmt,
// encoding/hex and net would have produced.
package nofmt

import (
	"errors"
	"strconv"
	"strings"
)

// Wrap returns an error that reads prefix + ": " + err.Error() and unwraps
// to err, as fmt.Errorf(prefix+": %w", err) would.
func Wrap(prefix string, err error) error {
	return &wrapped{msg: prefix + ": " + err.Error(), err: err}
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// ErrLength is DecodeHex's error for an odd number of hex digits; its text
// is that of encoding/hex.ErrLength.
var ErrLength = errors.New("encoding/hex: odd length hex string")

// InvalidByteError is DecodeHex's error for a byte that is not a hex digit;
// its text is that of encoding/hex.InvalidByteError.
type InvalidByteError byte

// Error reads like encoding/hex's: the byte as a rune formatted by fmt's %#U,
// e.g. "encoding/hex: invalid byte: U+007A 'z'".
func (e InvalidByteError) Error() string {
	return "encoding/hex: invalid byte: " + unicodeSharp(byte(e))
}

// unicodeSharp formats b as a rune the way fmt's %#U does: "U+" and at least
// four upper-case hex digits, then the character quoted if it is printable.
func unicodeSharp(b byte) string {
	const digits = "0123456789ABCDEF"
	s := "U+00" + string([]byte{digits[b>>4], digits[b&0xf]})
	if r := rune(b); strconv.IsPrint(r) {
		s += " '" + string(r) + "'"
	}
	return s
}

// DecodeHex returns the bytes written in hex in s, like
// encoding/hex.DecodeString, with the same errors in the same cases: an
// invalid byte is reported before an odd length.
func DecodeHex(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		hi, ok := fromHex(s[i])
		if !ok {
			return out, InvalidByteError(s[i])
		}
		lo, ok := fromHex(s[i+1])
		if !ok {
			return out, InvalidByteError(s[i+1])
		}
		out = append(out, hi<<4|lo)
	}
	if len(s)%2 == 1 {
		if _, ok := fromHex(s[len(s)-1]); !ok {
			return out, InvalidByteError(s[len(s)-1])
		}
		return out, ErrLength
	}
	return out, nil
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// SplitHostPort splits "host:port", "[host]:port" or "[host%zone]:port"
// into host and port as net.SplitHostPort does, and reports false for every
// address net.SplitHostPort rejects.
func SplitHostPort(hostport string) (host, port string, ok bool) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return "", "", false
	}
	j, k := 0, 0
	if hostport[0] == '[' {
		end := strings.IndexByte(hostport, ']')
		if end < 0 || end+1 != i { // no ']', or it is not just before the last ':'
			return "", "", false
		}
		host = hostport[1:end]
		j, k = 1, end+1
	} else {
		host = hostport[:i]
		if strings.IndexByte(host, ':') >= 0 {
			return "", "", false
		}
	}
	if strings.IndexByte(hostport[j:], '[') >= 0 || strings.IndexByte(hostport[k:], ']') >= 0 {
		return "", "", false
	}
	return host, hostport[i+1:], true
}
