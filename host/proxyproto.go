package host

import (
	"crypto/tls"
	"net"
	"net/netip"

	"github.com/tunnelwasm/tunnel/host/internal/proxyproto"
)

// ProxyProtocol returns a hook that tells the target who the client really
// is: before any byte of the client, it sends a PROXY protocol v1 header
// (the text form HAProxy, nginx, Postfix and many servers understand):
//
//	PROXY TCP4 192.0.2.7 192.0.2.1 51234 9090\r\n
//
// Without it a server behind the tunnel only sees the tunnel's address.
// Attach it with Directions OnlyClientToServer, as the first link.
func ProxyProtocol() Hook { return proxyProtoHook{version: 1} }

// ProxyProtocolV2 returns a hook like [ProxyProtocol] that sends the binary
// PROXY protocol v2 header instead: the client's address and port and the
// address it connected to, and, when the connection's ConnInfo.TLS is
// set, TLVs for the target: PP2_TYPE_AUTHORITY (the server name the client
// asked for, SNI), PP2_TYPE_ALPN (the negotiated protocol), and, on a
// route that terminates TLS, PP2_TYPE_SSL with the TLS version
// (PP2_SUBTYPE_SSL_VERSION, "TLSv1.3" as OpenSSL names it), whether the
// client sent a certificate, and whether it was verified (verify 0).
//
// HAProxy (accept-proxy), nginx (proxy_protocol) and Envoy read it.
// Attach it with Directions OnlyClientToServer, as the first link.
func ProxyProtocolV2() Hook { return proxyProtoHook{version: 2} }

type proxyProtoHook struct{ version int }

func (h proxyProtoHook) Open(info *ConnInfo) (Filter, error) {
	return proxyProtoFilter{version: h.version}, nil
}

type proxyProtoFilter struct {
	PassThrough
	version int
}

func (f proxyProtoFilter) Opened(s *Stream) error {
	if f.version == 2 {
		return s.Send(ClientToServer, proxyHeaderV2(s.Info()))
	}
	return s.Send(ClientToServer, proxyHeader(s.Info().Client, s.Info().Listen))
}

// proxyHeader formats the v1 header for a connection from src to dst.
func proxyHeader(src, dst net.Addr) []byte {
	return proxyproto.AppendV1(nil, proxyproto.Header{Command: proxyproto.Proxy, Source: tcpAddrPort(src), Destination: tcpAddrPort(dst)})
}

// proxyHeaderV2 formats the v2 header of a connection.
func proxyHeaderV2(info *ConnInfo) []byte {
	h := proxyproto.Header{
		Command:     proxyproto.Proxy,
		Transport:   proxyproto.TransportStream,
		Source:      tcpAddrPort(info.Client),
		Destination: tcpAddrPort(info.Listen),
	}
	if t := info.TLS; t != nil {
		h.Authority = t.ServerName
		h.ALPN = t.ALPN
		if t.Version != 0 { // terminated here, not only routed by SNI
			ssl := &proxyproto.SSL{Client: proxyproto.ClientSSL, Verify: 1, Version: tlsVersionName(t.Version)}
			if t.Verified || t.PeerSubject != "" || len(t.PeerDNS) > 0 || len(t.PeerURIs) > 0 {
				ssl.Client |= proxyproto.ClientCertConn | proxyproto.ClientCertSess
			}
			if t.Verified {
				ssl.Verify = 0
			}
			h.SSL = ssl
		}
	}
	return proxyproto.AppendV2(nil, h)
}

// tcpAddrPort is a TCP address as a netip.AddrPort (IPv4-mapped addresses
// unmapped), or the zero AddrPort for any other kind of address, which the
// headers send as UNKNOWN (v1) or AF_UNSPEC (v2).
func tcpAddrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// tlsVersionName names a TLS version as OpenSSL does (SSL_get_version),
// which is what servers reading PP2_SUBTYPE_SSL_VERSION expect.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}
