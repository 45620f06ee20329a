package addr

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/tunnelwasm/tunnel/internal/clienthello"
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

// Hop is a route as Cycle sees it: where it listens, what it dials, and
// what TLS server name its connections carry there.
type Hop struct {
	Listen string
	// Target is "" when the route dials no fixed address (its plugin
	// chooses).
	Target string
	// ServerNames tell the route apart from the others on its address by
	// the client's TLS server name (clienthello.MatchName patterns).
	ServerNames []string
	// Renames is set when the route's connections leave it with another
	// server name than they came with, OutName: "" for a route that
	// terminates TLS and dials in plaintext, the upstream name for one
	// that originates TLS. Otherwise the bytes, and the name, pass through.
	Renames bool
	OutName string
}

// ForwardLoop is a cycle of routes that forward to each other (Cycle).
type ForwardLoop struct {
	// Routes are indexes into the hops, in the order a connection goes
	// round, from the lowest index.
	Routes []int
	// ByName is set when a route of the cycle is chosen by server name:
	// only connections that carry Name into Routes[0] go round ("" for
	// none, or plaintext); Described says it for a message.
	ByName    bool
	Name      string
	Described string
}

// Cycle returns a cycle of two or more routes that forward to each other:
// the target of each Loops to the next one's listen address, and, where
// routes share that address by server name, the name the connection
// carries picks the next one (exact names first, then wildcards, then "*",
// as the host picks). Each such connection would go round through the
// tunnel until the descriptors run out, as with a route whose target is
// its own listener (Loops; not reported here). Nil when there is none.
func Cycle(hops []Hop) *ForwardLoop {
	// The names worth trying: one of each kind a route can tell apart.
	type candidate struct{ name, described string }
	var cands []candidate
	seen := map[string]bool{"": true} // none: added last, the narrowest

	add := func(name, described string) {
		if !seen[strings.ToLower(name)] {
			seen[strings.ToLower(name)] = true
			cands = append(cands, candidate{name, described})
		}
	}
	shared := false
	for _, h := range hops {
		for _, p := range h.ServerNames {
			shared = true
			switch suffix, wild := strings.CutPrefix(p, "*."); {
			case p == "*":
				add("tunnel-loop-check.invalid", "a server name no other route there takes (or none)")
			case wild:
				add("tunnel-loop-check."+suffix, fmt.Sprintf("a server name matching %q", p))
			default:
				add(p, fmt.Sprintf("the server name %q", p))
			}
		}
		if h.Renames && h.OutName != "" {
			add(h.OutName, fmt.Sprintf("the server name %q", h.OutName))
		}
	}
	if !shared {
		cands = cands[:0] // names choose nothing: one pass, with none
	}
	cands = append(cands, candidate{"", "no server name (or plaintext)"})
	index := map[string]int{}
	for k, c := range cands {
		index[strings.ToLower(c.name)] = k
	}
	// Who listens where, and who dials whom, once: the search below asks
	// for each (route, name) pair.
	groups := map[string][]int{} // listen address -> routes told apart there by name
	for j, h := range hops {
		if len(h.ServerNames) > 0 {
			groups[h.Listen] = append(groups[h.Listen], j)
		}
	}
	dials := routeDials(hops)
	onCycles := trimAcyclic(dials)
	reaches := func(j int, name string) bool {
		if len(hops[j].ServerNames) == 0 {
			return true
		}
		return pickByName(hops, groups[hops[j].Listen], name) == j
	}
	next := func(s state) []state {
		h := hops[s.route]
		if h.Target == "" {
			return nil
		}
		name := cands[s.cand].name
		if h.Renames {
			name = h.OutName
		}
		k := index[strings.ToLower(name)]
		var out []state
		for _, j := range dials[s.route] {
			if onCycles[j] && reaches(j, name) {
				out = append(out, state{j, k})
			}
		}
		return out
	}
	const (
		unseen = iota
		onPath
		done
	)
	mark := map[state]int{}
	var path []state
	var found []state
	var visit func(s state) bool
	visit = func(s state) bool {
		mark[s] = onPath
		path = append(path, s)
		for _, t := range next(s) {
			switch mark[t] {
			case onPath:
				for k, p := range path {
					if p == t {
						found = append([]state(nil), path[k:]...)
						return true
					}
				}
			case unseen:
				if visit(t) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		mark[s] = done
		return false
	}
	for i := range hops {
		if !onCycles[i] {
			continue
		}
		for k, c := range cands {
			if s := (state{i, k}); mark[s] == unseen && reaches(i, c.name) && visit(s) {
				return loopOf(hops, found, func(k int) (string, string) { return cands[k].name, cands[k].described })
			}
		}
	}
	return nil
}

// routeDials returns, for each route, the routes whose listener its target
// reaches (Loops), leaving names aside: only listeners on the target's
// port are compared.
func routeDials(hops []Hop) [][]int {
	byPort := map[string][]int{}
	for j, h := range hops {
		if _, port, err := net.SplitHostPort(h.Listen); err == nil {
			byPort[port] = append(byPort[port], j)
		}
	}
	dials := make([][]int, len(hops))
	for i, h := range hops {
		if h.Target == "" {
			continue
		}
		_, port, err := net.SplitHostPort(h.Target)
		if err != nil {
			continue
		}
		for _, j := range byPort[port] {
			if j != i && Loops(hops[j].Listen, h.Target) {
				dials[i] = append(dials[i], j)
			}
		}
	}
	return dials
}

// trimAcyclic reports the routes that may lie on a cycle of dials: it
// removes, again and again, those that dial no remaining route or that no
// remaining route dials. In a usual configuration nothing is left, and
// the search by server name has nothing to do.
func trimAcyclic(dials [][]int) []bool {
	n := len(dials)
	in, out := make([]int, n), make([]int, n)
	from := make([][]int, n)
	for i, js := range dials {
		out[i] = len(js)
		for _, j := range js {
			in[j]++
			from[j] = append(from[j], i)
		}
	}
	left := make([]bool, n)
	var queue []int
	for i := range n {
		left[i] = true
		if in[i] == 0 || out[i] == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if !left[i] {
			continue
		}
		left[i] = false
		for _, j := range dials[i] {
			if in[j]--; left[j] && in[j] == 0 {
				queue = append(queue, j)
			}
		}
		for _, j := range from[i] {
			if out[j]--; left[j] && out[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	return left
}

// state is a route and the candidate name a connection carries into it:
// a cycle of states is a cycle of routes some connection goes round
// forever.
type state struct{ route, cand int }

// loopOf makes the ForwardLoop of a cycle of states, rotated to start at
// its lowest route index.
func loopOf(hops []Hop, cycle []state, cand func(int) (string, string)) *ForwardLoop {
	m := 0
	for k := range cycle {
		if cycle[k].route < cycle[m].route {
			m = k
		}
	}
	cycle = append(cycle[m:], cycle[:m]...)
	l := &ForwardLoop{}
	for _, st := range cycle {
		l.Routes = append(l.Routes, st.route)
		if len(hops[st.route].ServerNames) > 0 {
			l.ByName = true
		}
	}
	l.Name, l.Described = cand(cycle[0].cand)
	return l
}

// pickByName returns the route among group (those told apart by server
// name on one address) that a connection carrying name reaches: an exact
// name, else a wildcard, else the "*" default (the only one for no name);
// -1 for none.
func pickByName(hops []Hop, group []int, name string) int {
	if name != "" {
		for _, wild := range []bool{false, true} {
			for _, j := range group {
				for _, p := range hops[j].ServerNames {
					if p != "*" && strings.HasPrefix(p, "*.") == wild && clienthello.MatchName(p, name) {
						return j
					}
				}
			}
		}
	}
	for _, j := range group {
		if slices.Contains(hops[j].ServerNames, "*") {
			return j
		}
	}
	return -1
}

// CyclePath describes l for a message: `"a" dials 127.0.0.1:9002 ("b"),
// which dials 127.0.0.1:9001 ("a")`, name(i) naming route i.
func CyclePath(hops []Hop, l *ForwardLoop, name func(i int) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q", name(l.Routes[0]))
	for k, i := range l.Routes {
		next := l.Routes[(k+1)%len(l.Routes)]
		if k > 0 {
			b.WriteString(", which")
		}
		fmt.Fprintf(&b, " dials %s (%q)", hops[i].Target, name(next))
	}
	return b.String()
}

// Who says which connections go round, for a message: "every connection",
// or, when server names choose the routes, those that carry the name.
func (l *ForwardLoop) Who() string {
	if l.ByName {
		return "every connection that carries " + l.Described
	}
	return "every connection"
}

// UpstreamName is the server name a route that originates TLS sends toward
// target (a Hop's OutName): serverName, else, unless verification is off,
// target's host; none for an IP address, which crypto/tls does not send.
func UpstreamName(serverName, target string, insecure bool) string {
	name := serverName
	if name == "" && !insecure {
		name, _, _ = net.SplitHostPort(target)
	}
	if net.ParseIP(name) != nil {
		return ""
	}
	return strings.TrimSuffix(name, ".")
}
