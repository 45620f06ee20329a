//go:build linux

package main

// The tunnel-admin target: the tunnel with its admin endpoint on and
// /metrics scraped every second, as Prometheus would, for as long as the
// forwarder runs. Its goals: request and connection rates within 0.97× of
// the plain tunnel in the same run (issue 13).

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sync/atomic"
	"time"
)

// scrapeEvery is how often the tunnel-admin target's /metrics is read.
const scrapeEvery = time.Second

// launcher is what newTargets' tunnel(extra...) returns.
type launcher = func(b *bench, name string, port int, backend string) (*proc, error)

// adminTarget is the tunnel with --admin on a port of its own and a
// scraper reading /metrics every second until the process ends.
func (b *bench) adminTarget(tunnel func(extra ...string) launcher) *target {
	return &target{Name: "tunnel-admin", Desc: "the tunnel, no plugin, with the admin endpoint on and /metrics scraped every second",
		Command: "tunnel --from LISTEN --to BACKEND --dump none --admin 127.0.0.1:APORT  (+ GET /metrics every 1 s)",
		launch: func(b *bench, name string, port int, backend string) (*proc, error) {
			aport, err := b.ports.next()
			if err != nil {
				return nil, err
			}
			p, err := tunnel("--admin", fmt.Sprintf("127.0.0.1:%d", aport))(b, name, port, backend)
			if err != nil {
				return nil, err
			}
			go scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", aport), p.done, &adminScrapes)
			return p, nil
		}, pprof: true}
}

// scrapeCount counts scrapes.
type scrapeCount struct{ ok, failed atomic.Int64 }

// adminScrapes counts the scrapes of every tunnel-admin forwarder of the
// run; reported with the goals.
var adminScrapes scrapeCount

// scrape GETs url every scrapeEvery until done is closed, reading each
// body whole. A failure before the first success (the endpoint starting)
// is not counted.
func scrape(url string, done <-chan struct{}, n *scrapeCount) {
	client := &http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(scrapeEvery)
	defer t.Stop()
	up := false
	for {
		select {
		case <-done:
			client.CloseIdleConnections()
			return
		case <-t.C:
		}
		resp, err := client.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s", resp.Status)
			}
		}
		switch {
		case err == nil:
			up = true
			n.ok.Add(1)
		case up:
			n.failed.Add(1)
		}
	}
}

// adminGoals: the tunnel scraped every second keeps 0.97× of the plain
// tunnel's request and connection rates, in the same run.
func (r results) adminGoals() []goal {
	var gs []goal
	for _, key := range []string{"redis1_get_rps", "redis1_set_rps", "redis50_get_rps", "redis50_set_rps", "conn1_per_s", "conn16_per_s"} {
		a, t := r.median("tunnel-admin", key), r.median("tunnel", key)
		gs = append(gs, goal{What: "admin endpoint scraped every second vs none: " + labelOf(key), Want: ">= 0.97x",
			Got: fmt.Sprintf("%.3fx (%s vs %s)", a/t, num(a), num(t)), Value: a / t, Met: a/t >= 0.97,
			Absent: math.IsNaN(a) || math.IsNaN(t)})
	}
	if ok, failed := adminScrapes.ok.Load(), adminScrapes.failed.Load(); ok > 0 || failed > 0 {
		gs = append(gs, goal{What: "tunnel-admin's /metrics scraped every second", Want: "no failed scrape",
			Got: fmt.Sprintf("%d scrapes, %d failed", ok, failed), Value: float64(failed), Met: failed == 0})
	}
	return gs
}
