package main

import (
	"bytes"
	"encoding/binary"
)

// verdict is what one detector makes of the first bytes.
type verdict int

const (
	no   verdict = iota // not this protocol
	more                // could be: needs more bytes
	yes                 // this protocol (name, if any, found)
)

// classify names the protocol of the first bytes b and the name it carries
// (the SNI of TLS, the Host of HTTP). more reports that b is too short to
// tell.
func (p *plugin) classify(b []byte) (proto, name string, needMore bool) {
	if len(b) == 0 {
		return "", "", true
	}
	undecided := false
	for _, d := range [...]struct {
		proto string
		fn    func([]byte) (verdict, string)
	}{
		{protoTLS, p.tls},
		{protoSSH, ssh},
		{protoRedis, redis},
		{protoHTTP, http},
	} {
		switch v, n := d.fn(b); v {
		case yes:
			return d.proto, n, false
		case more:
			undecided = true
		}
	}
	if undecided {
		return "", "", true
	}
	return protoUnknown, "", false
}

// prefix reports whether b is a prefix of s or s of b: more or yes.
func prefix(b []byte, s string) verdict {
	n := min(len(b), len(s))
	if string(b[:n]) != s[:n] {
		return no
	}
	if len(b) < len(s) {
		return more
	}
	return yes
}

// ssh: the client's identification string, "SSH-2.0-software", RFC 4253
// 4.2 (also "SSH-1.99-").
func ssh(b []byte) (verdict, string) { return prefix(b, "SSH-"), "" }

// redis: a RESP array of bulk strings, "*<count>\r\n$...", as every
// Redis client sends commands.
func redis(b []byte) (verdict, string) {
	if b[0] != '*' {
		return no, ""
	}
	i := 1
	for ; i < len(b) && i < 12 && '0' <= b[i] && b[i] <= '9'; i++ {
	}
	switch {
	case i == len(b):
		return more, ""
	case i == 1 || i == 12 || b[i] != '\r':
		return no, ""
	case i+1 == len(b):
		return more, ""
	case b[i+1] != '\n':
		return no, ""
	case i+2 == len(b):
		return more, ""
	case b[i+2] != '$':
		return no, ""
	}
	return yes, ""
}

// maxMethod bounds the length of an HTTP method.
const maxMethod = 20

// http: an HTTP/1 request line "METHOD target HTTP/1.x" and, in its
// header, Host (lower-cased, without the port). A request without Host is
// HTTP with no name.
func http(b []byte) (verdict, string) {
	i := 0
	for ; i < len(b) && i <= maxMethod && ('A' <= b[i] && b[i] <= 'Z' || b[i] == '-' || b[i] == '_'); i++ {
	}
	switch {
	case i == len(b):
		return more, ""
	case i == 0 || i > maxMethod || b[i] != ' ':
		return no, ""
	}
	// The request line.
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if bytes.IndexByte(b, '\r') >= 0 && bytes.IndexByte(b, '\r') < len(b)-1 {
			return no, ""
		}
		return more, ""
	}
	line := bytes.TrimSuffix(b[:eol], []byte("\r"))
	sp := bytes.LastIndexByte(line, ' ')
	if sp <= i || !bytes.HasPrefix(line[sp+1:], []byte("HTTP/1.")) {
		return no, ""
	}
	// Header lines up to the empty line.
	rest := b[eol+1:]
	for {
		eol := bytes.IndexByte(rest, '\n')
		if eol < 0 {
			return more, ""
		}
		line := bytes.TrimSuffix(rest[:eol], []byte("\r"))
		if len(line) == 0 {
			return yes, "" // no Host
		}
		if len(line) > 5 && line[4] == ':' && asciiEqualFold(line[:4], "host") {
			return yes, hostName(bytes.TrimSpace(line[5:]))
		}
		rest = rest[eol+1:]
	}
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hostName is a Host header's name: lower case, no port, no trailing dot;
// "" when it is not a plausible name.
func hostName(h []byte) string {
	if len(h) > 0 && h[0] == '[' { // [v6]:port
		if end := bytes.IndexByte(h, ']'); end > 0 {
			h = h[1:end]
		}
	} else if c := bytes.LastIndexByte(h, ':'); c >= 0 {
		h = h[:c]
	}
	return cleanName(h)
}

// cleanName lower-cases a DNS name and drops a trailing dot; "" when it
// holds anything but letters, digits, '-', '.', '_', ':' (IPv6).
func cleanName(h []byte) string {
	h = bytes.TrimSuffix(h, []byte("."))
	if len(h) == 0 || len(h) > 253 {
		return ""
	}
	out := make([]byte, len(h))
	for i, c := range h {
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == ':':
		default:
			return ""
		}
		out[i] = c
	}
	return string(out)
}

// TLS record and handshake constants (RFC 8446).
const (
	recordHandshake  = 22
	recordHeader     = 5
	maxRecord        = 1<<14 + 2048 // TLSCiphertext bound; a plaintext record is at most 2^14
	handshakeHello   = 1
	handshakeHeader  = 4
	extServerName    = 0
	serverNameHost   = 0
	maxHelloBodySize = 1 << 20
)

// tls: a ClientHello in one or more handshake records; its name is the SNI
// (server_name extension), lower-cased. The handshake message may span
// records (ClientHellos above 16 KiB, e.g. with large post-quantum key
// shares, always do) and the records TCP segments: until the whole
// ClientHello is there the answer is more, and the bytes are walked
// without copying; only the complete message is reassembled.
func (p *plugin) tls(b []byte) (verdict, string) {
	if b[0] != recordHandshake {
		return no, ""
	}
	if len(b) > 1 && b[1] != 3 {
		return no, ""
	}
	if len(b) < recordHeader+handshakeHeader {
		return more, ""
	}
	if b[2] > 4 {
		return no, ""
	}
	// Walk the records: how much handshake data is there, and how much is
	// needed (the 4-byte handshake header's length).
	need, have := -1, 0
	var hdr [handshakeHeader]byte
	for off := 0; ; {
		if len(b)-off < recordHeader {
			return more, ""
		}
		if b[off] != recordHandshake {
			return yes, "" // another record type before the hello ended: TLS, no name
		}
		n := int(binary.BigEndian.Uint16(b[off+3:]))
		if n == 0 || n > maxRecord {
			return yes, ""
		}
		frag := b[off+recordHeader : min(len(b), off+recordHeader+n)]
		for i := 0; i < len(frag) && have+i < handshakeHeader; i++ {
			hdr[have+i] = frag[i]
		}
		have += len(frag)
		if need < 0 && have >= handshakeHeader {
			if hdr[0] != handshakeHello {
				return yes, ""
			}
			need = handshakeHeader + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3]))
			if need > maxHelloBodySize {
				return yes, ""
			}
		}
		if need >= 0 && have >= need {
			break
		}
		if len(frag) < n {
			return more, "" // this record continues in the next bytes
		}
		off += recordHeader + n
	}
	// Reassemble the message from the fragments.
	msg := p.scratch[:0]
	for off := 0; len(msg) < need; {
		n := int(binary.BigEndian.Uint16(b[off+3:]))
		frag := b[off+recordHeader : min(len(b), off+recordHeader+n)]
		msg = append(msg, frag...)
		off += recordHeader + n
	}
	p.scratch = msg
	return yes, sni(msg[handshakeHeader:need])
}

// sni returns the host_name of a ClientHello body's server_name extension,
// or "".
func sni(h []byte) string {
	r := reader{b: h}
	r.skip(2 + 32)       // legacy_version, random
	r.skip(int(r.u8()))  // legacy_session_id
	r.skip(int(r.u16())) // cipher_suites
	r.skip(int(r.u8()))  // legacy_compression_methods
	exts := reader{b: r.bytes(int(r.u16()))}
	for !exts.bad && len(exts.b) >= 4 {
		typ, body := exts.u16(), reader{b: exts.bytes(int(exts.u16()))}
		if typ != extServerName {
			continue
		}
		list := reader{b: body.bytes(int(body.u16()))}
		for !list.bad && len(list.b) >= 3 {
			kind, name := list.u8(), list.bytes(int(list.u16()))
			if kind == serverNameHost && !list.bad {
				return cleanName(name)
			}
		}
		return ""
	}
	return ""
}

// reader reads big-endian fields; past the end it sets bad and returns
// zeros.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.bad, r.b = true, nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) skip(n int) { r.bytes(n) }

func (r *reader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}
