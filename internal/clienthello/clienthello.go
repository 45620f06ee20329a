// Package clienthello reads a TLS ClientHello from a connection without
// terminating TLS, so a route can be chosen by the server name (SNI) and
// the bytes replayed, unchanged, to the chosen target.
//
// The ClientHello is reassembled across TCP segments and TLS records: a
// handshake message may span several records, and post-quantum hellos
// (X25519MLKEM768, Go's default since 1.24) or hellos with many ALPN
// protocols exceed one 16 KiB record. Reading is bounded by a size
// (DefaultMaxSize); the caller bounds it in time with a read deadline.
// Read never reads past the last record of the ClientHello, and Hello.Raw
// holds every byte it read, for a byte-exact replay.
package clienthello

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
)

// DefaultMaxSize bounds the bytes Read consumes when given no limit: four
// full records, room for any ClientHello seen in practice.
const DefaultMaxSize = 64 << 10

// Record and handshake constants of RFC 8446.
const (
	recordHeaderLen    = 5
	maxPlaintextRecord = 1 << 14
	typeHandshake      = 22
	typeAlert          = 21
	typeClientHello    = 1
	extServerName      = 0
	extALPN            = 16
)

// AlertUnrecognizedName is the alert description a server sends when it has
// nothing for the client's server name (RFC 6066, section 3).
const AlertUnrecognizedName = 112

// AlertDecodeError is the alert description a server sends for a message
// that does not parse (RFC 8446, section 6.2), as crypto/tls does for a
// malformed ClientHello.
const AlertDecodeError = 50

// Errors Read wraps: test them with errors.Is.
var (
	// ErrNotTLS: the bytes are not a TLS handshake (e.g. plain HTTP).
	ErrNotTLS = errors.New("not a TLS ClientHello")
	// ErrTruncated: the connection ended before the ClientHello did.
	ErrTruncated = errors.New("ClientHello truncated")
	// ErrTooLarge: the ClientHello is larger than the size limit.
	ErrTooLarge = errors.New("ClientHello larger than the limit")
	// ErrMalformed: the records held a ClientHello that does not parse.
	ErrMalformed = errors.New("malformed ClientHello")
)

// Hello is what Read found.
type Hello struct {
	// ServerName is the host_name of the server_name extension, as sent;
	// empty when the client sent none.
	ServerName string
	// ALPN lists the protocols the client offers, in its order.
	ALPN []string
	// Version is the record layer's version of the first record (0x0301
	// for most clients; the negotiated version is decided later).
	Version uint16
	// Raw is every byte read, whole records: replay it to the target.
	Raw []byte
}

// Read reads records from r until they hold a whole ClientHello, reading
// exactly the records' bytes and no more, and at most maxSize bytes in all
// (DefaultMaxSize when maxSize <= 0). The returned error wraps ErrNotTLS,
// ErrTruncated, ErrTooLarge or ErrMalformed, or is r's own read error
// (such as a deadline); the bytes read so far are in the Hello returned
// with it, which is nil only when nothing was read.
func Read(r io.Reader, maxSize int) (*Hello, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	h := &Hello{}
	var msg []byte // the handshake bytes reassembled from the records
	need := -1     // the length of the whole handshake message, once known
	for need < 0 || len(msg) < need {
		if len(h.Raw)+recordHeaderLen > maxSize {
			return h, fmt.Errorf("%w: more than %d bytes read and the ClientHello is not complete", ErrTooLarge, maxSize)
		}
		start := len(h.Raw)
		h.Raw = append(h.Raw, make([]byte, recordHeaderLen)...)
		got := 0
		if start == 0 {
			// The first byte tells a client that is not TLS, which may
			// send less than a record header and wait for an answer.
			n, err := readSome(r, h.Raw)
			if n > 0 && h.Raw[0] != typeHandshake {
				h.Raw = h.Raw[:n]
				return h, notTLS(h.Raw, true)
			}
			if err != nil {
				h.Raw = h.Raw[:n]
				return nilIfEmpty(h), err
			}
			got = n
		}
		if err := readFull(r, h.Raw[start+got:]); err != nil {
			h.Raw = h.Raw[:start+got+readSoFar(err)]
			return nilIfEmpty(h), err
		}
		hdr := h.Raw[start:]
		if hdr[0] != typeHandshake {
			return h, notTLS(hdr, start == 0)
		}
		if hdr[1] != 3 {
			return h, fmt.Errorf("%w: record version %#04x is not TLS", ErrNotTLS, binary.BigEndian.Uint16(hdr[1:3]))
		}
		if start == 0 {
			h.Version = binary.BigEndian.Uint16(hdr[1:3])
		}
		n := int(binary.BigEndian.Uint16(hdr[3:5]))
		if n == 0 || n > maxPlaintextRecord {
			return h, fmt.Errorf("%w: a handshake record of %d bytes (1 to %d allowed)", ErrMalformed, n, maxPlaintextRecord)
		}
		if len(h.Raw)+n > maxSize {
			return h, fmt.Errorf("%w: a record of %d bytes would take the ClientHello past %d bytes", ErrTooLarge, n, maxSize)
		}
		body := len(h.Raw)
		h.Raw = append(h.Raw, make([]byte, n)...)
		if err := readFull(r, h.Raw[body:]); err != nil {
			h.Raw = h.Raw[:body+readSoFar(err)]
			return h, err
		}
		msg = append(msg, h.Raw[body:]...)
		if need < 0 && len(msg) >= 4 {
			if msg[0] != typeClientHello {
				return h, fmt.Errorf("%w: the first handshake message is of type %d, not a ClientHello (1)", ErrNotTLS, msg[0])
			}
			need = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			// Each record carries at most 16 KiB: the records still to
			// come add their headers.
			if rest := need - len(msg); rest > 0 {
				records := (rest + maxPlaintextRecord - 1) / maxPlaintextRecord
				if len(h.Raw)+rest+records*recordHeaderLen > maxSize {
					return h, fmt.Errorf("%w: the ClientHello says it is %d bytes, more than the %d allowed", ErrTooLarge, need, maxSize)
				}
			}
		}
	}
	if err := h.parse(msg[4:need]); err != nil {
		return h, err
	}
	return h, nil
}

// partialRead is a read error after n bytes of a buffer.
type partialRead struct {
	n   int
	err error
}

func (e *partialRead) Error() string { return e.err.Error() }
func (e *partialRead) Unwrap() error { return e.err }

func readSoFar(err error) int {
	var p *partialRead
	if errors.As(err, &p) {
		return p.n
	}
	return 0
}

// readFull fills b; an end of stream is ErrTruncated (the first byte of
// the connection is readSome's).
func readFull(r io.Reader, b []byte) error {
	n, err := io.ReadFull(r, b)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &partialRead{n, fmt.Errorf("%w: the connection ended before the ClientHello was complete", ErrTruncated)}
	}
	return &partialRead{n, fmt.Errorf("reading the ClientHello: %w", err)}
}

// readSome reads at least one byte of the connection into b: an end of
// stream before it is io.EOF (the client sent nothing), after it
// ErrTruncated.
func readSome(r io.Reader, b []byte) (int, error) {
	n, err := io.ReadAtLeast(r, b, 1)
	switch {
	case err == nil:
		return n, nil
	case n == 0 && errors.Is(err, io.EOF):
		return 0, io.EOF
	}
	return n, fmt.Errorf("reading the ClientHello: %w", err)
}

func nilIfEmpty(h *Hello) *Hello {
	if len(h.Raw) == 0 {
		return nil
	}
	return h
}

// notTLS describes what the first bytes look like instead.
func notTLS(hdr []byte, first bool) error {
	if !first {
		return fmt.Errorf("%w: a record of type %d arrived before the ClientHello was complete", ErrNotTLS, hdr[0])
	}
	printable := true
	for _, c := range hdr {
		if c > unicode.MaxASCII || !unicode.IsPrint(rune(c)) && c != '\r' && c != '\n' {
			printable = false
		}
	}
	switch {
	case printable:
		return fmt.Errorf("%w: the client sent %q, which looks like plain text (e.g. HTTP) sent to a TLS port", ErrNotTLS, hdr)
	case hdr[0]&0x80 != 0:
		return fmt.Errorf("%w: an SSL 2.0 style hello (first byte %#02x), which is not supported", ErrNotTLS, hdr[0])
	}
	return fmt.Errorf("%w: the first record is of type %d, not a handshake (22)", ErrNotTLS, hdr[0])
}

// parse reads the ClientHello body (after the 4-byte handshake header).
func (h *Hello) parse(b []byte) error {
	p := parser{b: b}
	p.skip(2 + 32)  // legacy_version, random
	p.skip(p.u8())  // legacy_session_id
	p.skip(p.u16()) // cipher_suites
	p.skip(p.u8())  // legacy_compression_methods
	if p.err == nil && len(p.b) == 0 {
		return nil // no extensions (an old client): no SNI
	}
	exts := parser{b: p.bytes(p.u16())}
	if p.err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, p.err)
	}
	seen := map[int]bool{}
	for len(exts.b) > 0 && exts.err == nil {
		typ := exts.u16()
		data := parser{b: exts.bytes(exts.u16())}
		if exts.err != nil {
			break
		}
		if seen[typ] {
			return fmt.Errorf("%w: extension %d appears twice", ErrMalformed, typ)
		}
		seen[typ] = true
		switch typ {
		case extServerName:
			list := parser{b: data.bytes(data.u16())}
			for len(list.b) > 0 && list.err == nil {
				nameType := list.u8()
				name := list.bytes(list.u16())
				if list.err == nil && nameType == 0 {
					if h.ServerName != "" {
						return fmt.Errorf("%w: two host names in server_name", ErrMalformed)
					}
					if err := checkName(name); err != nil {
						return err
					}
					h.ServerName = string(name)
				}
			}
			if list.err != nil || data.err != nil || len(data.b) != 0 {
				return fmt.Errorf("%w: bad server_name extension", ErrMalformed)
			}
		case extALPN:
			list := parser{b: data.bytes(data.u16())}
			for len(list.b) > 0 && list.err == nil {
				proto := list.bytes(list.u8())
				if list.err == nil {
					if len(proto) == 0 {
						return fmt.Errorf("%w: an empty ALPN protocol", ErrMalformed)
					}
					h.ALPN = append(h.ALPN, string(proto))
				}
			}
			if list.err != nil || data.err != nil || len(data.b) != 0 {
				return fmt.Errorf("%w: bad ALPN extension", ErrMalformed)
			}
		}
	}
	if exts.err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, exts.err)
	}
	return nil
}

// checkName refuses server names no DNS name could be: empty, too long,
// with bytes outside printable ASCII, or ending with a dot (RFC 6066
// forbids the trailing dot; crypto/tls refuses it too).
func checkName(name []byte) error {
	if len(name) == 0 || len(name) > 255 {
		return fmt.Errorf("%w: a server name of %d bytes", ErrMalformed, len(name))
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: the server name %q has a byte %#02x no host name has", ErrMalformed, name, c)
		}
	}
	if name[len(name)-1] == '.' {
		return fmt.Errorf("%w: the server name %q ends with a dot", ErrMalformed, name)
	}
	return nil
}

// parser reads big-endian, length-prefixed fields; the first overrun
// sets err and every later read returns zero values.
type parser struct {
	b   []byte
	err error
}

func (p *parser) bytes(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n > len(p.b) {
		p.err = fmt.Errorf("a field of %d bytes where %d remain", n, len(p.b))
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) skip(n int) { p.bytes(n) }

func (p *parser) u8() int {
	b := p.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (p *parser) u16() int {
	b := p.bytes(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

// Alert returns a TLS alert record: fatal (level 2) with the given
// description, e.g. AlertUnrecognizedName.
func Alert(description uint8) []byte {
	return []byte{typeAlert, 3, 3, 0, 2, 2, description}
}

// WriteUnrecognizedName writes the fatal unrecognized_name alert record a
// server sends when it serves no such name.
func WriteUnrecognizedName(w io.Writer) error {
	if _, err := w.Write(Alert(AlertUnrecognizedName)); err != nil {
		return fmt.Errorf("writing the unrecognized_name alert: %w", err)
	}
	return nil
}

// MatchName reports whether a server name matches a pattern: "*" matches
// every name (even none), "*.example.com" any one label in front of
// example.com (not example.com itself, nor a.b.example.com), anything else
// the name exactly. Case is ignored, and so is a trailing dot of name.
func MatchName(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		label, rest, found := strings.Cut(name, ".")
		return found && label != "" && strings.EqualFold(rest, suffix)
	}
	return strings.EqualFold(pattern, name)
}

// Pick returns which of n routes sharing an address, route i serving the
// server_names patterns(i), takes a connection asking for name: the first
// with the exact name, else the first with a matching "*.suffix", else the
// one with "*"; -1 for none. An empty name (plaintext, or TLS without a
// server name) goes to the "*" route alone. The engine routes by it, and
// the configuration's loop check predicts the engine with it.
func Pick(n int, patterns func(i int) []string, name string) int {
	if name != "" {
		for _, wild := range []bool{false, true} {
			for i := range n {
				for _, p := range patterns(i) {
					if p != "*" && strings.HasPrefix(p, "*.") == wild && MatchName(p, name) {
						return i
					}
				}
			}
		}
	}
	for i := range n {
		if slices.Contains(patterns(i), "*") {
			return i
		}
	}
	return -1
}

// CheckPattern validates a server_names entry: "*", "*.name" or a name,
// made of letters, digits, '-', '_' and dots, without empty labels.
func CheckPattern(p string) error {
	if p == "*" {
		return nil
	}
	name := strings.TrimPrefix(p, "*.")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("server name %q is empty or too long", p)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("server name %q has an empty label", p)
		}
		if len(label) > 63 {
			return fmt.Errorf("server name %q has a label longer than 63 characters", p)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				if c == '*' {
					return fmt.Errorf("server name %q: a wildcard is only allowed as the whole first label (*.example.com)", p)
				}
				return fmt.Errorf("server name %q has the character %q, which no host name has", p, c)
			}
		}
	}
	return nil
}
