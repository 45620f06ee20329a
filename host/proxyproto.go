package host

import (
	"fmt"
	"net"
)

// ProxyProtocol returns a hook that tells the target who the client really
// is: before any byte of the client, it sends a PROXY protocol v1 header
// (the text form HAProxy, nginx, Postfix and many servers understand):
//
//	PROXY TCP4 192.0.2.7 192.0.2.1 51234 9090\r\n
//
// Without it a server behind the tunnel only sees the tunnel's address.
// Attach it with Directions OnlyClientToServer, as the first link.
func ProxyProtocol() Hook { return proxyProtoHook{} }

type proxyProtoHook struct{}

func (proxyProtoHook) Open(info *ConnInfo) (Filter, error) { return proxyProtoFilter{}, nil }

type proxyProtoFilter struct{ PassThrough }

func (proxyProtoFilter) Opened(s *Stream) error {
	return s.Send(ClientToServer, proxyHeader(s.Info().Client, s.Info().Listen))
}

// proxyHeader formats the v1 header for a connection from src to dst.
func proxyHeader(src, dst net.Addr) []byte {
	sa, ok1 := src.(*net.TCPAddr)
	da, ok2 := dst.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return []byte("PROXY UNKNOWN\r\n")
	}
	family := "TCP6"
	sip, dip := sa.IP, da.IP
	if s4, d4 := sip.To4(), dip.To4(); s4 != nil && d4 != nil {
		family, sip, dip = "TCP4", s4, d4
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", family, sip, dip, sa.Port, da.Port)
}
