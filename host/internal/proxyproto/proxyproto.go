// Package proxyproto reads and writes the PROXY protocol headers (version 1,
// text, and version 2, binary, with TLVs) that a proxy sends before a
// connection's first byte to tell the server who the client really is, as
// HAProxy's specification describes them
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
//
// [Parse] reads one header of either version from a reader, never a byte
// past it; [AppendV1] and [AppendV2] format one.
package proxyproto

import (
	"net/netip"
)

// Size limits of a header, from the specification.
const (
	// MaxV1 is the longest v1 header, CRLF included.
	MaxV1 = 107
	// MaxV2 is the longest v2 header: 16 fixed bytes and a 16-bit length.
	MaxV2 = 16 + 65535
)

// Signature is the 12 bytes every v2 header starts with.
const Signature = "\r\n\r\n\x00\r\nQUIT\n"

// Command says whether a header carries a client's connection.
type Command uint8

const (
	// Local is a connection the proxy made on its own (a health check):
	// the receiver uses the connection's real endpoints. v2 only.
	Local Command = 0
	// Proxy is a connection relayed for a client, whose addresses the
	// header carries (unless the family is unknown: v1 UNKNOWN, v2
	// AF_UNSPEC or AF_UNIX).
	Proxy Command = 1
)

// String returns "LOCAL" or "PROXY".
func (c Command) String() string {
	if c == Local {
		return "LOCAL"
	}
	return "PROXY"
}

// Transport is the v2 transport protocol (the low nibble of its 14th byte).
type Transport uint8

const (
	// TransportUnspec is an unknown or unspecified protocol.
	TransportUnspec Transport = 0
	// TransportStream is TCP (SOCK_STREAM).
	TransportStream Transport = 1
	// TransportDgram is UDP (SOCK_DGRAM).
	TransportDgram Transport = 2
)

// TLV types of the specification (section 2.2.x).
const (
	TypeALPN       = 0x01 // PP2_TYPE_ALPN: the negotiated application protocol
	TypeAuthority  = 0x02 // PP2_TYPE_AUTHORITY: the host name the client asked for (SNI)
	TypeCRC32C     = 0x03 // PP2_TYPE_CRC32C: a CRC-32C of the whole header
	TypeNoop       = 0x04 // PP2_TYPE_NOOP: padding
	TypeUniqueID   = 0x05 // PP2_TYPE_UNIQUE_ID: an opaque connection id
	TypeSSL        = 0x20 // PP2_TYPE_SSL: the client's TLS session, with sub-TLVs
	TypeNetNS      = 0x30 // PP2_TYPE_NETNS: the network namespace's name
	SubtypeVersion = 0x21 // PP2_SUBTYPE_SSL_VERSION: e.g. "TLSv1.3"
	SubtypeCN      = 0x22 // PP2_SUBTYPE_SSL_CN: the client certificate's common name
	SubtypeCipher  = 0x23 // PP2_SUBTYPE_SSL_CIPHER: e.g. "ECDHE-RSA-AES128-GCM-SHA256"
	SubtypeSigAlg  = 0x24 // PP2_SUBTYPE_SSL_SIG_ALG: the certificate's signature algorithm
	SubtypeKeyAlg  = 0x25 // PP2_SUBTYPE_SSL_KEY_ALG: the certificate's key algorithm
)

// Bits of SSL.Client.
const (
	ClientSSL      = 0x01 // PP2_CLIENT_SSL: the client connected over TLS
	ClientCertConn = 0x02 // PP2_CLIENT_CERT_CONN: it sent a certificate on this connection
	ClientCertSess = 0x04 // PP2_CLIENT_CERT_SESS: it sent one in the TLS session
)

// A TLV is one type-length-value field of a v2 header (or of its SSL TLV).
type TLV struct {
	Type  uint8
	Value []byte
}

// SSL is the content of a PP2_TYPE_SSL TLV: how the client's TLS session
// went.
type SSL struct {
	// Client holds the ClientSSL, ClientCertConn and ClientCertSess bits.
	Client uint8
	// Verify is zero when the client presented a certificate that was
	// verified, non-zero otherwise.
	Verify uint32
	// Version is PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"; empty: absent.
	Version string
	// CN, Cipher, SigAlg and KeyAlg are the other known sub-TLVs; empty:
	// absent.
	CN, Cipher, SigAlg, KeyAlg string
	// Extra holds the sub-TLVs of other types, in order.
	Extra []TLV
}

// Header is one PROXY protocol header.
type Header struct {
	// Version is 1 or 2: the version Parse read. The Append functions
	// ignore it.
	Version int
	// Command is Proxy or Local (v1 has only Proxy).
	Command Command
	// Transport is TCP for a v1 header with addresses; in v2, as sent.
	Transport Transport
	// Source and Destination are the client's address and the address it
	// connected to. Parse leaves them zero (invalid) when the header does
	// not carry them (LOCAL, v1 UNKNOWN, v2 AF_UNSPEC or AF_UNIX): the
	// receiver then uses the connection's own endpoints.
	Source, Destination netip.AddrPort
	// ALPN (PP2_TYPE_ALPN) and Authority (PP2_TYPE_AUTHORITY, the SNI)
	// are empty when absent. v2 only.
	ALPN, Authority string
	// SSL is the PP2_TYPE_SSL TLV, nil when absent. v2 only.
	SSL *SSL
	// Extra holds the TLVs of the types not decoded above, in order
	// (a PP2_TYPE_CRC32C is checked by Parse and not kept). v2 only.
	Extra []TLV
}
