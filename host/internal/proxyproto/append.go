package proxyproto

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// addrs returns h's addresses as one family: both IPv4, or both IPv6 (an
// IPv4 address next to an IPv6 one is mapped), and whether there are any
// (a Proxy header with both addresses valid).
func (h *Header) addrs() (src, dst netip.AddrPort, six, ok bool) {
	src, dst = h.Source, h.Destination
	if h.Command != Proxy || !src.IsValid() || !dst.IsValid() {
		return src, dst, false, false
	}
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		return netip.AddrPortFrom(s, src.Port()), netip.AddrPortFrom(d, dst.Port()), false, true
	}
	s16, d16 := s.As16(), d.As16()
	return netip.AddrPortFrom(netip.AddrFrom16(s16), src.Port()), netip.AddrPortFrom(netip.AddrFrom16(d16), dst.Port()), true, true
}

// AppendV1 appends h as a v1 (text) header to dst:
//
//	PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n
//
// TCP6 when either address is IPv6 (an IPv4 one is then written mapped),
// and "PROXY UNKNOWN\r\n" for a Local header or one without both
// addresses. v1 has no TLVs: they are left out.
func AppendV1(dst []byte, h Header) []byte {
	src, d, six, ok := h.addrs()
	if !ok {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	if six {
		dst = append(dst, "PROXY TCP6 "...)
	} else {
		dst = append(dst, "PROXY TCP4 "...)
	}
	dst = src.Addr().AppendTo(dst)
	dst = append(dst, ' ')
	dst = d.Addr().AppendTo(dst)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(d.Port()), 10)
	return append(dst, "\r\n"...)
}

// AppendV2 appends h as a v2 (binary) header to dst: the signature, the
// command (LOCAL or PROXY), the family (AF_INET, AF_INET6 when either
// address is IPv6, AF_UNSPEC for a Local header or one without both
// addresses), the transport (h.Transport, or STREAM when unset with
// addresses), the addresses, then the TLVs in this order: ALPN, AUTHORITY,
// SSL (with its VERSION, CN, CIPHER, SIG_ALG and KEY_ALG sub-TLVs, those
// that are set, then its Extra), then h.Extra.
//
// A header longer than [MaxV2] cannot be written: the TLVs that would not
// fit are left out, whole, from the end.
func AppendV2(dst []byte, h Header) []byte {
	start := len(dst)
	dst = append(dst, Signature...)
	src, d, six, ok := h.addrs()
	tr := h.Transport
	if ok && tr == TransportUnspec {
		tr = TransportStream
	}
	if !ok {
		tr = TransportUnspec
	}
	switch {
	case !ok:
		dst = append(dst, 0x20|byte(h.Command&1), 0x00, 0, 0)
	case six:
		dst = append(dst, 0x21, 0x20|byte(tr), 0, 0)
		s, dd := src.Addr().As16(), d.Addr().As16()
		dst = append(dst, s[:]...)
		dst = append(dst, dd[:]...)
	default:
		dst = append(dst, 0x21, 0x10|byte(tr), 0, 0)
		s, dd := src.Addr().As4(), d.Addr().As4()
		dst = append(dst, s[:]...)
		dst = append(dst, dd[:]...)
	}
	if ok {
		dst = binary.BigEndian.AppendUint16(dst, src.Port())
		dst = binary.BigEndian.AppendUint16(dst, d.Port())
	}
	limit := start + MaxV2
	put := func(t uint8, v []byte) {
		if len(dst)+3+len(v) > limit || len(v) > 0xffff {
			return
		}
		dst = append(dst, t)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
		dst = append(dst, v...)
	}
	if h.ALPN != "" {
		put(TypeALPN, []byte(h.ALPN))
	}
	if h.Authority != "" {
		put(TypeAuthority, []byte(h.Authority))
	}
	if s := h.SSL; s != nil {
		v := []byte{s.Client}
		v = binary.BigEndian.AppendUint32(v, s.Verify)
		sub := func(t uint8, val string) {
			if val != "" {
				v = append(v, t)
				v = binary.BigEndian.AppendUint16(v, uint16(len(val)))
				v = append(v, val...)
			}
		}
		sub(SubtypeVersion, s.Version)
		sub(SubtypeCN, s.CN)
		sub(SubtypeCipher, s.Cipher)
		sub(SubtypeSigAlg, s.SigAlg)
		sub(SubtypeKeyAlg, s.KeyAlg)
		for _, t := range s.Extra {
			v = append(v, t.Type)
			v = binary.BigEndian.AppendUint16(v, uint16(len(t.Value)))
			v = append(v, t.Value...)
		}
		put(TypeSSL, v)
	}
	for _, t := range h.Extra {
		if t.Type == TypeCRC32C {
			continue // it would not match the header
		}
		put(t.Type, t.Value)
	}
	binary.BigEndian.PutUint16(dst[start+14:], uint16(len(dst)-start-16))
	return dst
}
