package addr

import (
	"fmt"
	"testing"
)

func TestLoops(t *testing.T) {
	for _, tc := range []struct {
		listen, target string
		loops          bool
	}{
		{"127.0.0.1:9090", "127.0.0.1:9090", true},
		{"127.0.0.1:9090", "127.0.0.1:8080", false},
		{"[::1]:9090", "[0:0::1]:9090", true},
		{"localhost:9090", "LOCALHOST:9090", true},
		{":9090", "127.0.0.1:9090", true},
		{"0.0.0.0:9090", "localhost:9090", true},
		{"[::]:9090", "[::1]:9090", true},
		{"0.0.0.0:9090", "0.0.0.0:9090", true},
		{"127.0.0.1:9090", "127.0.0.2:9090", false}, // another loopback address: another socket
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"0.0.0.0:9090", "192.0.2.1:9090", false}, // TEST-NET: not this machine
		{"0.0.0.0:9090", "db.example:9090", false},
		{"bad", "127.0.0.1:9090", false},
		{"localhost:9090", "127.0.0.1:9090", true},
		{"[::1]:9090", "localhost:9090", false}, // Go listens on 127.0.0.1 for localhost
		{"127.0.0.1:9090", "[::ffff:127.0.0.1]:9090", true},
		{"127.0.0.1:9090", "0.0.0.0:9090", true}, // Linux dials 0.0.0.0 as 127.0.0.1
		{"localhost:9090", "0.0.0.0:9090", true},
		{"[::1]:9090", "[::]:9090", true},
		{"[::1]:9090", "0.0.0.0:9090", false},
		{"127.0.0.2:9090", "0.0.0.0:9090", false},
		// No host: Go dials 0.0.0.0, which Linux connects to 127.0.0.1.
		{"127.0.0.1:9090", ":9090", true},
		{"localhost:9090", ":9090", true},
		{"0.0.0.0:9090", ":9090", true},
		{"[::]:9090", ":9090", true},
		{":9090", ":9090", true},
		{"[::1]:9090", ":9090", false},
		{"127.0.0.2:9090", ":9090", false},
	} {
		if got := Loops(tc.listen, tc.target); got != tc.loops {
			t.Errorf("Loops(%q, %q) = %v, want %v", tc.listen, tc.target, got, tc.loops)
		}
	}
}

func TestCycle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hops   []Hop
		want   []int
		byName string // the name that goes round, when names choose
	}{
		{"none", []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:8080"}, {Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"}}, nil, ""},
		{"two", []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"}, {Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"}}, []int{0, 1}, ""},
		{"three, listed out of order", []Hop{
			{Listen: "127.0.0.1:9000", Target: "127.0.0.1:6379"},
			{Listen: ":9003", Target: "localhost:9002"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"},
			{Listen: "127.0.0.1:9001", Target: "[::ffff:127.0.0.1]:9003"},
		}, []int{1, 2, 3}, ""},
		{"a self-loop alone is Loops'", []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9001"}}, nil, ""},
		{"a late dial reaches nothing", []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"}, {Listen: "127.0.0.1:9002"}}, nil, ""},
		{"a late dial's target is never dialled", []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"}, {Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", LateDial: true}}, nil, ""},
		{"port 0 never loops", []Hop{{Listen: "127.0.0.1:0", Target: "127.0.0.1:0"}, {Listen: "127.0.0.1:0", Target: "127.0.0.1:0"}}, nil, ""},
		{"the server name goes round", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"b.example"}},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:8443", ServerNames: []string{"*"}},
		}, []int{0, 1}, "b.example"},
		{"the default goes round", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:8443", ServerNames: []string{"b.example"}},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"*"}},
		}, []int{0, 2}, "tunnel-loop-check.invalid"},
		{"a wildcard goes round", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"*.example"}},
		}, []int{0, 1}, "tunnel-loop-check.example"},
		{"names that never meet", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", ServerNames: []string{"a.example"}},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"b.example"}},
		}, nil, ""},
		{"an exact name shadows the wildcard", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", ServerNames: []string{"a.example"}},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"*.example"}},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:8443", ServerNames: []string{"a.example"}},
		}, nil, ""},
		{"terminated TLS leaves in plaintext, which only the default takes", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", TLS: true},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"b.example"}},
		}, nil, ""},
		{"originated TLS carries its own name round", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", UpstreamTLS: true, UpstreamServerName: "b.example"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"b.example"}},
		}, []int{0, 1}, ""}, // every connection: A names it b.example
		{"plaintext fails a TLS route's handshake", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", TLS: true},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"},
		}, nil, ""},
		{"a TLS route re-originating TLS goes round", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", TLS: true, UpstreamTLS: true, UpstreamServerName: "a.example"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"},
		}, []int{0, 1}, ""}, // every TLS connection: plaintext fails the handshake
		{"renamed in the middle of three", []Hop{
			{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"},
			{Listen: "127.0.0.1:9002", Target: "127.0.0.1:9003", ServerNames: []string{"*"}, UpstreamTLS: true, UpstreamServerName: "c.example"},
			{Listen: "127.0.0.1:9003", Target: "127.0.0.1:9001", ServerNames: []string{"c.example"}},
		}, []int{0, 1, 2}, ""},
	} {
		got := Cycle(tc.hops)
		var routes []int
		name := ""
		if got != nil {
			routes = got.Routes
			if got.ByName {
				name = got.Name
			}
		}
		if fmt.Sprint(routes) != fmt.Sprint(tc.want) || name != tc.byName {
			t.Errorf("%s: Cycle = %v carrying %q, want %v carrying %q", tc.name, routes, name, tc.want, tc.byName)
		}
	}
}

func TestCyclePath(t *testing.T) {
	names := []string{"a", "b", "c"}
	name := func(i int) string { return names[i] }
	hops := []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"}, {Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"}}
	if got, want := CyclePath(hops, Cycle(hops), name), `"a" dials 127.0.0.1:9002 ("b"), which dials 127.0.0.1:9001 ("a")`; got != want {
		t.Errorf("CyclePath = %s, want %s", got, want)
	}
	hops = []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002"}, {Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001", ServerNames: []string{"*.example"}}}
	if got, want := Cycle(hops).Who(), `every connection that carries a server name matching "*.example"`; got != want {
		t.Errorf("Who = %s, want %s", got, want)
	}
	hops = []Hop{{Listen: "127.0.0.1:9001", Target: "127.0.0.1:9002", TLS: true, UpstreamTLS: true}, {Listen: "127.0.0.1:9002", Target: "127.0.0.1:9001"}}
	if got, want := Cycle(hops).Who(), `every TLS connection`; got != want {
		t.Errorf("Who = %s, want %s", got, want)
	}
}
