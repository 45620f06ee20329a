package addr

import (
	"fmt"
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

// Hop is a route as Cycle sees it: where it listens and what it dials.
type Hop struct {
	Listen string
	// Target is "" when the route dials no fixed address.
	Target string
	// Shared is set for a route told apart from others on its address by
	// server names: whether a connection dialled there reaches it depends
	// on the client's TLS server name, so no target is counted as
	// reaching it.
	Shared bool
}

// Cycle returns the routes, by index into hops, of a cycle of two or more
// that forward to each other: the target of each Loops to the next one's
// listen address, and the last one's to the first's. Each connection
// would go round through the tunnel until the descriptors run out, as
// with a route whose target is its own listener (Loops; not reported
// here). Nil when there is none; the cycle starts at its lowest index.
func Cycle(hops []Hop) []int {
	next := func(i int) []int {
		var out []int
		for j, h := range hops {
			if j != i && !h.Shared && hops[i].Target != "" && Loops(h.Listen, hops[i].Target) {
				out = append(out, j)
			}
		}
		return out
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(hops))
	var path []int
	var visit func(i int) []int
	visit = func(i int) []int {
		state[i] = onPath
		path = append(path, i)
		for _, j := range next(i) {
			switch state[j] {
			case onPath:
				for k, p := range path {
					if p == j {
						return rotateToMin(append([]int(nil), path[k:]...))
					}
				}
			case unseen:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		return nil
	}
	for i := range hops {
		if state[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// rotateToMin rotates cycle c to start at its lowest index.
func rotateToMin(c []int) []int {
	m := 0
	for k := range c {
		if c[k] < c[m] {
			m = k
		}
	}
	return append(c[m:], c[:m]...)
}

// CyclePath describes cycle (from Cycle) for a message: `"a" dials
// 127.0.0.1:9002 ("b"), which dials 127.0.0.1:9001 ("a")`, name(i) naming
// route i.
func CyclePath(hops []Hop, cycle []int, name func(i int) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q", name(cycle[0]))
	for k, i := range cycle {
		next := cycle[(k+1)%len(cycle)]
		if k > 0 {
			b.WriteString(", which")
		}
		fmt.Fprintf(&b, " dials %s (%q)", hops[i].Target, name(next))
	}
	return b.String()
}
