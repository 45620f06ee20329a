//go:build linux

package main

// The tunnel-accesslog target: the tunnel writing its access log, a JSON
// line per connection (--access-log FILE), as an operator runs it. Its
// goal (issue 13, "logs of a busy tunnel must not slow forwarding"):
// request and connection rates within 0.97× of the plain tunnel, which
// logs nothing per connection at -log-level warn, in the same run.

import (
	"fmt"
	"math"
	"path/filepath"
)

// accessLogTarget is the tunnel with --access-log into the run's
// temporary directory.
func (b *bench) accessLogTarget(tunnel func(extra ...string) launcher) *target {
	return &target{Name: "tunnel-accesslog", Desc: "the tunnel, no plugin, writing its JSON access log (a line per connection) to a file",
		Command: "tunnel --from LISTEN --to BACKEND --dump none --access-log FILE",
		launch: func(b *bench, name string, port int, backend string) (*proc, error) {
			return tunnel("--access-log", filepath.Join(b.tmp, name+"-access.log"))(b, name, port, backend)
		}, pprof: true}
}

// accessLogGoals: the access log costs the rates at most 3 %.
func (r results) accessLogGoals() []goal {
	var gs []goal
	for _, key := range []string{"redis50_get_rps", "redis50_set_rps", "conn1_per_s", "conn16_per_s"} {
		a, t := r.median("tunnel-accesslog", key), r.median("tunnel", key)
		gs = append(gs, goal{What: "access log vs none: " + labelOf(key), Want: ">= 0.97x",
			Got: fmt.Sprintf("%.3fx (%s vs %s)", a/t, num(a), num(t)), Value: a / t, Met: a/t >= 0.97,
			Absent: math.IsNaN(a) || math.IsNaN(t)})
	}
	return gs
}
