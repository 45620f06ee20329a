package addr

import (
	"net"
	"strings"
)

// Loops reports whether dialling target from a tunnel listening on listen
// would reach that same listener: the same port, and the same host, or a
// listener on every interface (no host, 0.0.0.0, ::) and a loopback,
// localhost or unspecified target. Each connection would then dial another
// through the tunnel until the descriptors run out. A port 0 listener never
// loops (its port is chosen at bind time). Other addresses of the machine
// are not counted: one on an interface may still be forwarded elsewhere
// (a Kubernetes Service address on kube-ipvs0), and a target named by
// another host name is not resolved; such loops go unnoticed.
func Loops(listen, target string) bool {
	lh, lp, err1 := net.SplitHostPort(listen)
	th, tp, err2 := net.SplitHostPort(target)
	if err1 != nil || err2 != nil || lp != tp || lp == "0" {
		return false
	}
	if SameHost(lh, th) {
		return true
	}
	if lip := net.ParseIP(lh); lh != "" && (lip == nil || !lip.IsUnspecified()) {
		return false
	}
	return local(th)
}

// SameHost reports whether two hosts of addresses name the same address
// to listen on or dial: equal names, or equal IPs however written
// ("::1" and "0:0::1"); "localhost" is 127.0.0.1, where Go listens for it.
func SameHost(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	ip := func(h string) net.IP {
		if strings.EqualFold(h, "localhost") {
			return net.IPv4(127, 0, 0, 1)
		}
		return net.ParseIP(h)
	}
	ai, bi := ip(a), ip(b)
	return ai != nil && bi != nil && ai.Equal(bi)
}

// local reports whether host names this machine: a loopback host, or the
// unspecified address (which connects to this machine).
func local(host string) bool {
	ip := net.ParseIP(host)
	return loopback(host) || ip != nil && ip.IsUnspecified()
}
