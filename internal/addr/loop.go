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
// localhost or unspecified target, or a loopback listener and the
// unspecified target of its family (which Linux dials as loopback). Each connection would then dial another
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
	if th == "" {
		// Go dials a target without a host (":9090") as the unspecified
		// IPv4 address, which Linux connects to 127.0.0.1.
		th = "0.0.0.0"
	}
	if SameHost(lh, th) {
		return true
	}
	if tip := net.ParseIP(th); tip != nil && tip.IsUnspecified() {
		// Linux connects a dial to the unspecified address to loopback:
		// 0.0.0.0 to 127.0.0.1, :: to ::1.
		if tip.To4() != nil && SameHost(lh, "127.0.0.1") || tip.To4() == nil && SameHost(lh, "::1") {
			return true
		}
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

// Hop is a route as Cycle sees it, its fields as configured: where it
// listens, what it dials, and what it does with TLS.
type Hop struct {
	Listen string
	// Target is "" when the route dials no fixed address.
	Target string
	// LateDial: the route's plugin chooses the target; Target is never
	// dialled.
	LateDial bool
	// ServerNames tell the route apart from the others on its address by
	// the client's TLS server name (clienthello.MatchName patterns).
	ServerNames []string
	// TLS is set for a route that terminates TLS: a plaintext connection
	// fails its handshake, and goes no further.
	TLS bool
	// UpstreamTLS is set for a route that originates TLS toward Target,
	// with UpstreamServerName as the server name, else Target's host (as
	// the host dials, whether it verifies the target or not).
	UpstreamTLS        bool
	UpstreamServerName string
}

// dials is the address the route dials, "" for none.
func (h Hop) dials() string {
	if h.LateDial {
		return ""
	}
	return h.Target
}

// sent is what a route's connections carry to its target.
type sent int

const (
	asIs  sent = iota // the bytes they came with
	plain             // plaintext: the route terminates TLS
	named             // TLS the route originates, with outName
)

// sends says what h's connections carry to its target, and the server
// name when it originates TLS ("" for none).
func (h Hop) sends() (sent, string) {
	switch {
	case h.UpstreamTLS:
		return named, upstreamName(h.UpstreamServerName, h.Target)
	case h.TLS:
		return plain, ""
	}
	return asIs, ""
}

// ForwardLoop is a cycle of routes that forward to each other (Cycle).
type ForwardLoop struct {
	// Routes are indexes into the hops, in the order a connection goes
	// round, from the lowest index.
	Routes []int
	// ByName is set when not every connection into Routes[0] goes round,
	// routes of the cycle being chosen by server name or terminating TLS:
	// those carrying Name do (one of a kind; "" for none), as Described
	// says for a message.
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
	// What a connection can carry, one of each kind a route tells apart:
	// each exact name, one name matching each wildcard, one that only a
	// "*" default takes, each name a route originates TLS with, none (TLS
	// without a name), and plaintext. The last two are the narrowest, and
	// tried last.
	type carried struct {
		name      string
		plain     bool
		described string
	}
	var cands []carried
	index := map[string]int{}
	add := func(name, described string) {
		if _, ok := index[strings.ToLower(name)]; !ok && name != "" {
			index[strings.ToLower(name)] = len(cands)
			cands = append(cands, carried{name: name, described: described})
		}
	}
	for _, h := range hops {
		for _, p := range h.ServerNames {
			switch suffix, wild := strings.CutPrefix(p, "*."); {
			case p == "*":
				add("tunnel-loop-check.invalid", "every connection that carries a server name no other route there takes, or none,")
			case wild:
				add("tunnel-loop-check."+suffix, fmt.Sprintf("every connection that carries a server name matching %q", p))
			default:
				add(p, fmt.Sprintf("every connection that carries the server name %q", p))
			}
		}
		if out, name := h.sends(); out == named {
			add(name, fmt.Sprintf("every connection that carries the server name %q", name))
		}
	}
	noName, plaintext := len(cands), len(cands)+1
	cands = append(cands, carried{described: "every TLS connection without a server name"}, carried{plain: true, described: "every plaintext connection"})

	groups := map[string][]int{} // listen address -> routes told apart there by name
	for j, h := range hops {
		if len(h.ServerNames) > 0 {
			groups[h.Listen] = append(groups[h.Listen], j)
		}
	}
	dials := routeDials(hops)
	onCycles := trimAcyclic(dials)
	// out is what route i sends on for a connection that came carrying k.
	out := func(i, k int) int {
		switch kind, name := hops[i].sends(); kind {
		case plain:
			return plaintext
		case named:
			if name == "" {
				return noName
			}
			return index[strings.ToLower(name)]
		}
		return k
	}
	type pickKey struct {
		listen string
		k      int
	}
	picked := map[pickKey]int{}
	// reaches: a connection carrying k to route j's address gets to j.
	reaches := func(j, k int) bool {
		h := hops[j]
		if h.TLS && cands[k].plain {
			return false
		}
		if len(h.ServerNames) == 0 {
			return true
		}
		key := pickKey{h.Listen, k}
		v, ok := picked[key]
		if !ok {
			v = pickByName(hops, groups[h.Listen], cands[k].name) // plaintext: "", the default
			picked[key] = v
		}
		return v == j
	}
	nexts := map[state][]state{}
	next := func(s state) []state {
		k := out(s.route, s.cand)
		key := state{s.route, k}
		if n, ok := nexts[key]; ok {
			return n
		}
		var n []state
		for _, j := range dials[s.route] {
			if onCycles[j] && reaches(j, k) {
				n = append(n, state{j, k})
			}
		}
		nexts[key] = n
		return n
	}
	const (
		unseen = iota
		onPath
		done
	)
	mark := map[state]int{}
	var path, found []state
	var visit func(s state) bool
	visit = func(s state) bool {
		mark[s] = onPath
		path = append(path, s)
		for _, t := range next(s) {
			switch mark[t] {
			case onPath:
				found = append([]state(nil), path[slices.Index(path, t):]...)
				return true
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
		for k := range cands {
			if s := (state{i, k}); mark[s] == unseen && reaches(i, k) && visit(s) {
				return loopOf(found, func(cycle []state) (string, string) {
					// Which connections entering the first route go
					// round: say all, or all TLS ones, when every kind
					// does.
					all, allTLS := true, true
					for k := range cands {
						if !walks(cycle, k, reaches, out) {
							all, allTLS = false, allTLS && cands[k].plain
						}
					}
					switch {
					case all:
						return "", ""
					case allTLS:
						return "", "every TLS connection"
					}
					return cands[cycle[0].cand].name, cands[cycle[0].cand].described
				})
			}
		}
	}
	return nil
}

// walks reports whether a connection entering cycle's first route
// carrying k follows the cycle round twice (by then what it carries has
// settled).
func walks(cycle []state, k int, reaches func(j, k int) bool, out func(i, k int) int) bool {
	for range 2 {
		for _, s := range cycle {
			if !reaches(s.route, k) {
				return false
			}
			k = out(s.route, k)
		}
	}
	return true
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
		target := h.dials()
		if target == "" {
			continue
		}
		_, port, err := net.SplitHostPort(target)
		if err != nil {
			continue
		}
		for _, j := range byPort[port] {
			if j != i && Loops(hops[j].Listen, target) {
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
// its lowest route index; carried says what the connections that go round
// carry into that route ("" described: any connection).
func loopOf(cycle []state, carried func(cycle []state) (name, described string)) *ForwardLoop {
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
	}
	l.Name, l.Described = carried(cycle)
	l.ByName = l.Described != ""
	return l
}

// pickByName returns the route among group (those told apart by server
// name on one address) that a connection carrying name reaches, as the
// engine picks it (clienthello.Pick); -1 for none.
func pickByName(hops []Hop, group []int, name string) int {
	if i := clienthello.Pick(len(group), func(i int) []string { return hops[group[i]].ServerNames }, name); i >= 0 {
		return group[i]
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

// Who says which connections go round, for a message: "every
// connection", or those that carry a name, or TLS.
func (l *ForwardLoop) Who() string {
	if l.ByName {
		return l.Described
	}
	return "every connection"
}

// upstreamName is the server name a route that originates TLS sends toward
// target: serverName, else target's host; none for an IP address, which
// crypto/tls does not send.
func upstreamName(serverName, target string) string {
	name := serverName
	if name == "" {
		name, _, _ = net.SplitHostPort(target)
	}
	if net.ParseIP(name) != nil {
		return ""
	}
	return strings.TrimSuffix(name, ".")
}
