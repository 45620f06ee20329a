//go:build linux

package main

// The tunnel-resp target: the tunnel with the built-in resp plugin (the
// Redis filter of plugins/resp) on both directions, blocking commands the
// benchmark never sends, so every request and reply is parsed and passes.
// Its goal (issue 11): a request rate at 50 clients of at least 0.8× the
// plugin-less tunnel's in the same run.

import (
	"fmt"
	"math"
)

// respConfig is the resp plugin's configuration in the benchmark.
const respConfig = `{"block":["FLUSHALL","FLUSHDB","CONFIG SET"],"log":false}`

// respTarget is the tunnel with --plugin builtin:resp.
func (b *bench) respTarget(tunnel func(extra ...string) func(b *bench, name string, port int, backend string) (*proc, error)) *target {
	return &target{Name: "tunnel-resp", Desc: "the tunnel, the built-in resp plugin (Redis protocol filter) on both directions, blocking commands never sent",
		Command: "tunnel --from LISTEN --to BACKEND --dump none --plugin builtin:resp --plugin-config '" + respConfig + "'",
		launch:  tunnel("--plugin", "builtin:resp", "--plugin-config", respConfig), pprof: true,
		only: []string{backRedis}} // a Redis filter: iperf3's and the echo's bytes are no Redis commands
}

// respGoals: the Redis filter keeps 0.8× of the plain tunnel's request
// rate at 50 clients, in the same run.
func (r results) respGoals() []goal {
	var gs []goal
	for _, key := range []string{"redis50_get_rps", "redis50_set_rps"} {
		p, t := r.median("tunnel-resp", key), r.median("tunnel", key)
		gs = append(gs, goal{What: "resp plugin vs no plugin: " + labelOf(key), Want: ">= 0.8x",
			Got: fmt.Sprintf("%.3fx (%s vs %s)", p/t, num(p), num(t)), Value: p / t, Met: p/t >= 0.8,
			Absent: math.IsNaN(p) || math.IsNaN(t)})
	}
	return gs
}
