package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// ErrNoHeader is returned (wrapped) by [Parse] when the connection starts
// with something that is neither a v1 nor a v2 header.
var ErrNoHeader = errors.New("no PROXY protocol header")

// Parse reads one v1 or v2 header from r and returns it with the number of
// bytes it read. It reads no byte past the header (byte by byte where it
// must, so r may be the connection itself), and at most [MaxV1] bytes of a
// v1 header and [MaxV2] of a v2 one. Set a read deadline on a connection
// first: Parse waits for the bytes a header still needs.
//
// A malformed header is an error saying what is wrong; an error of r is
// wrapped (errors.Is(err, os.ErrDeadlineExceeded) after a deadline), and
// input that is no header at all wraps [ErrNoHeader]. On error, n is the
// number of bytes read so far.
func Parse(r io.Reader) (h Header, n int, err error) {
	p := parser{r: r}
	if br, ok := r.(io.ByteReader); ok {
		p.br = br
	}
	if err := p.read(1); err != nil {
		return Header{}, p.n, err
	}
	switch p.buf[0] {
	case 'P':
		h, err = p.v1()
	case '\r':
		h, err = p.v2()
	default:
		err = fmt.Errorf("proxyproto: %w: the first byte is %q, want 'P' (v1) or '\\r' (v2)", ErrNoHeader, p.buf[0])
	}
	if err != nil {
		return Header{}, p.n, err
	}
	return h, p.n, nil
}

type parser struct {
	r   io.Reader
	br  io.ByteReader
	buf []byte // every byte read so far
	n   int
}

// read appends exactly k more bytes of r to p.buf.
func (p *parser) read(k int) error {
	start := len(p.buf)
	p.buf = append(p.buf, make([]byte, k)...)
	var m int
	var err error
	if p.br != nil {
		for m < k {
			var c byte
			if c, err = p.br.ReadByte(); err != nil {
				break
			}
			p.buf[start+m] = c
			m++
		}
	} else {
		m, err = io.ReadFull(p.r, p.buf[start:])
	}
	p.n += m
	p.buf = p.buf[:start+m]
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if p.n == 0 {
				return fmt.Errorf("proxyproto: the connection ended before any byte: %w", io.EOF)
			}
			return fmt.Errorf("proxyproto: the connection ended inside the header after %d bytes (%q): %w", p.n, p.buf, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("proxyproto: reading the header (%d bytes read): %w", p.n, err)
	}
	return nil
}

// v1 reads the rest of a text header whose 'P' was read.
func (p *parser) v1() (Header, error) {
	// "PROXY " then at least "UNKNOWN\r\n" or "TCP4 ": read what any
	// valid header has without waiting for more, then byte by byte.
	if err := p.read(5); err != nil {
		return Header{}, err
	}
	if string(p.buf) != "PROXY " {
		return Header{}, fmt.Errorf("proxyproto: %w: the connection starts with %q, want \"PROXY \" (v1)", ErrNoHeader, p.buf)
	}
	if err := p.read(4); err != nil {
		return Header{}, err
	}
	var least int // the bytes any valid header still has
	switch string(p.buf[6:]) {
	case "TCP4":
		least = len(" 1.1.1.1 1.1.1.1 1 1\r\n")
	case "TCP6":
		least = len(" :: :: 0 0\r\n") // "::" is the shortest IPv6 address
	case "UNKN":
		least = len("OWN\r\n")
	default:
		return Header{}, fmt.Errorf("proxyproto: v1: unknown protocol %q after \"PROXY \", want TCP4, TCP6 or UNKNOWN", p.buf[6:])
	}
	err := p.read(least)
	if i := bytes.IndexByte(p.buf, '\n'); i >= 0 && i < len(p.buf)-1 || err != nil && i >= 0 {
		// A line shorter than any valid one: say what is wrong with it.
		if i > 0 && p.buf[i-1] == '\r' {
			if _, perr := parseV1Line(p.buf[:i-1]); perr != nil {
				return Header{}, perr
			}
			return Header{}, fmt.Errorf("proxyproto: v1: header %q too short", p.buf[:i+1])
		}
		return Header{}, fmt.Errorf("proxyproto: v1: a line feed without a carriage return at byte %d in %q", i, p.buf)
	}
	if err != nil {
		return Header{}, err
	}
	for !bytes.HasSuffix(p.buf, []byte("\r\n")) {
		if i := bytes.IndexByte(p.buf, '\n'); i >= 0 {
			return Header{}, fmt.Errorf("proxyproto: v1: a line feed without a carriage return at byte %d in %q", i, p.buf)
		}
		if len(p.buf) >= MaxV1 {
			return Header{}, fmt.Errorf("proxyproto: v1: no CRLF in the first %d bytes (%q)", MaxV1, p.buf)
		}
		if err := p.read(1); err != nil {
			return Header{}, err
		}
	}
	return parseV1Line(p.buf[:len(p.buf)-2])
}

// parseV1Line parses a v1 line without its CRLF.
func parseV1Line(line []byte) (Header, error) {
	h := Header{Version: 1, Command: Proxy}
	if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
		return Header{}, fmt.Errorf("proxyproto: v1: a stray %q at byte %d", line[i], i)
	}
	f := bytes.Split(line, []byte(" "))
	if len(f) < 2 || string(f[0]) != "PROXY" {
		return Header{}, fmt.Errorf("proxyproto: v1: %q does not start with \"PROXY \"", line)
	}
	switch string(f[1]) {
	case "UNKNOWN":
		// The rest up to the CRLF is to be ignored.
		return h, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, fmt.Errorf("proxyproto: v1: unknown protocol %q, want TCP4, TCP6 or UNKNOWN", f[1])
	}
	if len(f) != 6 {
		return Header{}, fmt.Errorf("proxyproto: v1: %d fields in %q, want PROXY, the protocol, two addresses and two ports separated by single spaces", len(f), line)
	}
	six := string(f[1]) == "TCP6"
	var addrs [2]netip.Addr
	for i, s := range f[2:4] {
		a, err := netip.ParseAddr(string(s))
		if err != nil || a.Zone() != "" {
			return Header{}, fmt.Errorf("proxyproto: v1: bad %s address %q", which(i), s)
		}
		if a.Is6() != six {
			return Header{}, fmt.Errorf("proxyproto: v1: %s address %q is not %s", which(i), s, f[1])
		}
		addrs[i] = a
	}
	var ports [2]uint16
	for i, s := range f[4:6] {
		v, err := strconv.ParseUint(string(s), 10, 16)
		if err != nil || len(s) > 1 && s[0] == '0' {
			return Header{}, fmt.Errorf("proxyproto: v1: bad %s port %q, want a decimal number from 0 to 65535 without leading zeros", which(i), s)
		}
		ports[i] = uint16(v)
	}
	h.Transport = TransportStream
	h.Source = netip.AddrPortFrom(addrs[0], ports[0])
	h.Destination = netip.AddrPortFrom(addrs[1], ports[1])
	return h, nil
}

func which(i int) string {
	if i == 0 {
		return "source"
	}
	return "destination"
}

// v2 reads the rest of a binary header whose first byte was read.
func (p *parser) v2() (Header, error) {
	if err := p.read(15); err != nil {
		return Header{}, err
	}
	if string(p.buf[:12]) != Signature {
		return Header{}, fmt.Errorf("proxyproto: %w: the first 12 bytes % x are not the v2 signature", ErrNoHeader, p.buf[:12])
	}
	if v := p.buf[12] >> 4; v != 2 {
		return Header{}, fmt.Errorf("proxyproto: v2: version %d in byte 13 (0x%02x), want 2", v, p.buf[12])
	}
	cmd := p.buf[12] & 0xf
	if cmd > 1 {
		return Header{}, fmt.Errorf("proxyproto: v2: unknown command %d in byte 13 (0x%02x), want 0 (LOCAL) or 1 (PROXY)", cmd, p.buf[12])
	}
	length := int(binary.BigEndian.Uint16(p.buf[14:16]))
	if err := p.read(length); err != nil {
		return Header{}, err
	}
	return parseV2(p.buf)
}

// Address block sizes per family (the high nibble of byte 14).
var familyLen = [4]int{0, 12, 36, 216}

// parseV2 parses a whole v2 header whose signature, version and command
// were checked.
func parseV2(b []byte) (Header, error) {
	h := Header{Version: 2, Command: Command(b[12] & 0xf)}
	fam, tr := b[13]>>4, b[13]&0xf
	body := b[16:]
	if fam > 3 || tr > 2 {
		if h.Command == Local {
			// LOCAL: the protocol block is to be discarded.
			return h, nil
		}
		return Header{}, fmt.Errorf("proxyproto: v2: unknown address family or protocol 0x%02x in byte 14", b[13])
	}
	h.Transport = Transport(tr)
	alen := familyLen[fam]
	if len(body) < alen {
		return Header{}, fmt.Errorf("proxyproto: v2: %d bytes after the fixed header, too short for the addresses of family %d (%d bytes)", len(body), fam, alen)
	}
	if h.Command == Proxy {
		switch fam {
		case 1:
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
		case 2:
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
		}
	}
	tlvs, err := splitTLVs(body[alen:], 16+alen)
	if err != nil {
		return Header{}, fmt.Errorf("proxyproto: v2: %w", err)
	}
	for _, t := range tlvs {
		switch t.Type {
		case TypeALPN:
			h.ALPN = string(t.Value)
		case TypeAuthority:
			if !utf8.Valid(t.Value) {
				return Header{}, fmt.Errorf("proxyproto: v2: PP2_TYPE_AUTHORITY %q is not UTF-8", t.Value)
			}
			h.Authority = string(t.Value)
		case TypeCRC32C:
			if err := checkCRC(b, t.Value, t.off); err != nil {
				return Header{}, err
			}
		case TypeSSL:
			s, err := parseSSL(t.Value)
			if err != nil {
				return Header{}, fmt.Errorf("proxyproto: v2: PP2_TYPE_SSL: %w", err)
			}
			h.SSL = s
		default:
			h.Extra = append(h.Extra, TLV{Type: t.Type, Value: bytes.Clone(t.Value)})
		}
	}
	return h, nil
}

// tlvAt is a TLV and the offset of its value in the header.
type tlvAt struct {
	TLV
	off int
}

// splitTLVs splits b into TLVs; base is b's offset in the header, for the
// messages.
func splitTLVs(b []byte, base int) ([]tlvAt, error) {
	var out []tlvAt
	for i := 0; i < len(b); {
		if len(b)-i < 3 {
			return nil, fmt.Errorf("%d stray bytes at offset %d, too short for a TLV", len(b)-i, base+i)
		}
		n := int(binary.BigEndian.Uint16(b[i+1:]))
		if len(b)-i-3 < n {
			return nil, fmt.Errorf("TLV of type 0x%02x at offset %d claims %d bytes, %d left", b[i], base+i, n, len(b)-i-3)
		}
		out = append(out, tlvAt{TLV{Type: b[i], Value: b[i+3 : i+3+n]}, base + i + 3})
		i += 3 + n
	}
	return out, nil
}

func parseSSL(v []byte) (*SSL, error) {
	if len(v) < 5 {
		return nil, fmt.Errorf("%d bytes, want at least 5 (client, verify)", len(v))
	}
	s := &SSL{Client: v[0], Verify: binary.BigEndian.Uint32(v[1:5])}
	subs, err := splitTLVs(v[5:], 5)
	if err != nil {
		return nil, err
	}
	for _, t := range subs {
		val := string(t.Value)
		switch t.Type {
		case SubtypeVersion:
			s.Version = val
		case SubtypeCN:
			s.CN = val
		case SubtypeCipher:
			s.Cipher = val
		case SubtypeSigAlg:
			s.SigAlg = val
		case SubtypeKeyAlg:
			s.KeyAlg = val
		default:
			s.Extra = append(s.Extra, TLV{Type: t.Type, Value: bytes.Clone(t.Value)})
		}
	}
	return s, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkCRC checks the value v, at offset off, of a PP2_TYPE_CRC32C TLV of
// header b: the CRC-32C of the whole header with that value zeroed.
func checkCRC(b, v []byte, off int) error {
	if len(v) != 4 {
		return fmt.Errorf("proxyproto: v2: PP2_TYPE_CRC32C of %d bytes, want 4", len(v))
	}
	want := binary.BigEndian.Uint32(v)
	c := bytes.Clone(b)
	clear(c[off : off+4])
	if got := crc32c(c); got != want {
		return fmt.Errorf("proxyproto: v2: PP2_TYPE_CRC32C is 0x%08x, the header's is 0x%08x", want, got)
	}
	return nil
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
