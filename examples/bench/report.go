//go:build linux

package main

// Results: the metric catalogue, medians and ratios, the goals, and the
// text, Markdown and JSON outputs.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// metric is one figure of the report.
type metric struct {
	Key    string `json:"key"`
	Label  string `json:"label"`
	Unit   string `json:"unit"`
	Higher bool   `json:"higher_is_better"`
	Ratio  bool   `json:"ratio_to_direct"` // false for the forwarder's own costs (direct has none)
	table  bool   // shown in the text table (all are in the JSON)
}

var metrics = []metric{
	{"bulk1_gbit_s", "bulk, 1 stream", "Gbit/s", true, true, true},
	{"bulk8_gbit_s", "bulk, 8 streams", "Gbit/s", true, true, true},
	{"bulk1_cpu_s_per_gib", "CPU per GiB, 1 stream", "s", false, false, true},
	{"bulk8_cpu_s_per_gib", "CPU per GiB, 8 streams", "s", false, false, true},
	{"bulk1_rss_mib", "peak RSS, bulk 1 stream", "MiB", false, false, false},
	{"bulk8_rss_mib", "peak RSS, bulk", "MiB", false, false, true},
	{"redis1_get_rps", "redis GET, 1 client", "req/s", true, true, true},
	{"redis1_get_p50_ms", "  GET p50, 1 client", "ms", false, true, true},
	{"redis1_get_p99_ms", "  GET p99, 1 client", "ms", false, true, true},
	{"redis1_set_rps", "redis SET, 1 client", "req/s", true, true, true},
	{"redis1_set_p50_ms", "  SET p50, 1 client", "ms", false, true, false},
	{"redis1_set_p99_ms", "  SET p99, 1 client", "ms", false, true, false},
	{"redis1_cpu_us_per_req", "CPU per request, 1 client", "µs", false, false, true},
	{"redis1_rss_mib", "peak RSS, redis 1 client", "MiB", false, false, false},
	{"redis50_get_rps", "redis GET, 50 clients", "req/s", true, true, true},
	{"redis50_get_p50_ms", "  GET p50, 50 clients", "ms", false, true, true},
	{"redis50_get_p99_ms", "  GET p99, 50 clients", "ms", false, true, true},
	{"redis50_set_rps", "redis SET, 50 clients", "req/s", true, true, true},
	{"redis50_set_p50_ms", "  SET p50, 50 clients", "ms", false, true, false},
	{"redis50_set_p99_ms", "  SET p99, 50 clients", "ms", false, true, false},
	{"redis50_cpu_us_per_req", "CPU per request, 50 clients", "µs", false, false, true},
	{"redis50_rss_mib", "peak RSS, redis", "MiB", false, false, true},
	{"conn1_per_s", "new conns, 1 at a time", "conn/s", true, true, true},
	{"conn1_p50_ms", "  conn p50, 1 at a time", "ms", false, true, false},
	{"conn1_p99_ms", "  conn p99, 1 at a time", "ms", false, true, true},
	{"conn1_cpu_us_per_conn", "CPU per conn, 1 at a time", "µs", false, false, true},
	{"conn1_rss_mib", "peak RSS, conns 1 at a time", "MiB", false, false, false},
	{"conn16_per_s", "new conns, 16 at a time", "conn/s", true, true, true},
	{"conn16_p50_ms", "  conn p50, 16 at a time", "ms", false, true, false},
	{"conn16_p99_ms", "  conn p99, 16 at a time", "ms", false, true, true},
	{"conn16_cpu_us_per_conn", "CPU per conn, 16 at a time", "µs", false, false, true},
	{"conn16_rss_mib", "peak RSS, conns", "MiB", false, false, true},
}

// figure is one metric of one target: the per-round samples, their median
// and the median's ratio to direct's median.
type figure struct {
	Samples []float64 `json:"samples"`
	// Rounds is the round of each sample (0-based), when known: a
	// measurement that failed leaves its round out.
	Rounds []int   `json:"rounds,omitempty"`
	Median float64 `json:"median"`
	Ratio  float64 `json:"ratio_to_direct,omitempty"`
}

// results holds every sample, by target then metric key.
type results map[string]map[string]*figure

func (r results) add(target, key string, v float64) {
	r.fig(target, key).Samples = append(r.fig(target, key).Samples, v)
}

// addRound is add for a sample of a known round.
func (r results) addRound(target, key string, round int, v float64) {
	f := r.fig(target, key)
	f.Samples = append(f.Samples, v)
	f.Rounds = append(f.Rounds, round)
}

// fig returns target's figure for key, made if need be.
func (r results) fig(target, key string) *figure {
	if r[target] == nil {
		r[target] = map[string]*figure{}
	}
	f := r[target][key]
	if f == nil {
		f = &figure{}
		r[target][key] = f
	}
	return f
}

// summarize computes every median, then every ratio to direct.
func (r results) summarize() {
	for _, byKey := range r {
		for _, f := range byKey {
			f.Median = median(f.Samples)
		}
	}
	direct := r["direct"]
	for _, m := range metrics {
		if !m.Ratio {
			continue
		}
		for _, byKey := range r {
			if f := byKey[m.Key]; f != nil && direct[m.Key] != nil {
				f.Ratio = ratio(f.Median, direct[m.Key].Median)
			}
		}
	}
}

func (r results) median(target, key string) float64 {
	if f := r[target][key]; f != nil {
		return f.Median
	}
	return math.NaN()
}

// goal is one target of the brief, checked against the medians.
type goal struct {
	What   string  `json:"what"`
	Want   string  `json:"want"`
	Got    string  `json:"got"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
	Absent bool    `json:"absent,omitempty"` // a figure is missing: not judged
}

// goals checks: the tunnel without plugin at least as good as nginx on
// every figure; the no-op plugin >= 0.9x the plain tunnel's request rate and
// >= 0.5x its bulk throughput; 10,000 idle connections under 200 MiB.
func (r results) goals(idle []idleResult, idleWant int) []goal {
	var gs []goal
	for _, m := range metrics {
		if !m.table && strings.HasSuffix(m.Key, "_rss_mib") {
			continue
		}
		t, n := r.median("tunnel", m.Key), r.median("nginx", m.Key)
		g := goal{What: "tunnel vs nginx: " + strings.TrimSpace(m.Label), Value: t / n}
		if m.Higher {
			g.Want = "tunnel >= nginx"
			g.Met = t >= n
		} else {
			g.Want = "tunnel <= nginx"
			g.Met = t <= n
		}
		g.Got = fmt.Sprintf("%s vs %s %s (tunnel/nginx %.2f)", num(t), num(n), m.Unit, t/n)
		if m.Ratio {
			g.Got = fmt.Sprintf("%.2fx vs %.2fx of direct (%s vs %s %s)", r[("tunnel")][m.Key].ratioOrNaN(), r["nginx"][m.Key].ratioOrNaN(), num(t), num(n), m.Unit)
		}
		g.Got += r.perRound("tunnel", "nginx", m.Key)
		g.Absent = math.IsNaN(t) || math.IsNaN(n)
		gs = append(gs, g)
	}
	for _, key := range []string{"redis1_cpu_us_per_req", "redis50_cpu_us_per_req"} {
		t, n := r.median("tunnel", key), r.median("naive", key)
		gs = append(gs, goal{What: "tunnel vs naive Go forwarder: " + labelOf(key), Want: "tunnel < naive",
			Got: fmt.Sprintf("%s vs %s µs (tunnel/naive %.2f)", num(t), num(n), t/n), Value: t / n, Met: t < n,
			Absent: math.IsNaN(t) || math.IsNaN(n)})
	}
	for _, k := range []struct {
		key  string
		want float64
	}{{"redis1_get_rps", 0.9}, {"redis1_set_rps", 0.9}, {"redis50_get_rps", 0.9}, {"redis50_set_rps", 0.9}, {"bulk1_gbit_s", 0.5}, {"bulk8_gbit_s", 0.5}} {
		p, t := r.median("tunnel-noop", k.key), r.median("tunnel", k.key)
		gs = append(gs, goal{What: "noop plugin vs no plugin: " + labelOf(k.key), Want: fmt.Sprintf(">= %.1fx", k.want),
			Got: fmt.Sprintf("%.3fx (%s vs %s)%s", p/t, num(p), num(t), r.perRound("tunnel-noop", "tunnel", k.key)), Value: p / t, Met: p/t >= k.want,
			Absent: math.IsNaN(p) || math.IsNaN(t)})
	}
	// Capture never in the way (issue 14): the same bounds as the no-op plugin.
	for _, k := range []struct {
		key  string
		want float64
	}{{"redis1_get_rps", 0.9}, {"redis1_set_rps", 0.9}, {"redis50_get_rps", 0.9}, {"redis50_set_rps", 0.9}, {"bulk1_gbit_s", 0.5}, {"bulk8_gbit_s", 0.5}} {
		c, t := r.median("tunnel-capture", k.key), r.median("tunnel", k.key)
		gs = append(gs, goal{What: "capture vs no capture: " + labelOf(k.key), Want: fmt.Sprintf(">= %.1fx", k.want),
			Got: fmt.Sprintf("%.3fx (%s vs %s)%s", c/t, num(c), num(t), r.perRound("tunnel-capture", "tunnel", k.key)), Value: c / t, Met: c/t >= k.want,
			Absent: math.IsNaN(c) || math.IsNaN(t)})
	}
	gs = append(gs, r.adminGoals()...)
	gs = append(gs, r.accessLogGoals()...) // accesslog.go
	gs = append(gs, r.respGoals()...)      // resp.go
	g := goal{What: fmt.Sprintf("%d idle connections through tunnel-noop: VmRSS", idleWant), Want: "< 200 MiB", Absent: true}
	for _, res := range idle {
		if res.Target == "tunnel-noop" && res.Error == "" {
			g.Value, g.Absent = res.rssAt(), false
			g.Met = res.rssAt() < 200
			g.Got = fmt.Sprintf("%.1f MiB with %d connections", res.RSSMiB, res.Conns)
			if res.Conns < res.Want {
				g.Got += fmt.Sprintf(" (%.1f MiB projected to %d)", res.ProjMiB, res.Want)
			}
		}
	}
	return append(gs, g)
}

// perRound describes a's figure over b's round by round, pairing the
// samples of the rounds both have (a round whose measurement failed for
// either is left out): the lowest and highest of the per-round ratios and
// their median. Two targets measured in the same round are minutes apart at
// most, rounds up to an hour, so the machine's drift moves the median of
// these ratios less than the ratio of the medians; the goal is still judged
// by the latter. "" when fewer than two rounds pair up.
func (r results) perRound(a, b, key string) string {
	fa, fb := r[a][key], r[b][key]
	if fa == nil || fb == nil || len(fa.Rounds) != len(fa.Samples) || len(fb.Rounds) != len(fb.Samples) {
		return ""
	}
	byRound := map[int]float64{}
	for i, round := range fb.Rounds {
		byRound[round] = fb.Samples[i]
	}
	var rs []float64
	for i, round := range fa.Rounds {
		base, ok := byRound[round]
		if !ok {
			continue
		}
		if x := ratio(fa.Samples[i], base); !math.IsNaN(x) && !math.IsInf(x, 0) {
			rs = append(rs, x)
		}
	}
	if len(rs) < 2 {
		return ""
	}
	slices.Sort(rs)
	return fmt.Sprintf("; per round %.2f–%.2f, median %.2f", rs[0], rs[len(rs)-1], median(rs))
}

// labelOf is the label of the metric key, or the key when there is none.
func labelOf(key string) string {
	for _, m := range metrics {
		if m.Key == key {
			return strings.TrimSpace(m.Label)
		}
	}
	return key
}

func (f *figure) ratioOrNaN() float64 {
	if f == nil || f.Ratio == 0 {
		return math.NaN()
	}
	return f.Ratio
}

// num formats a figure with about three significant digits.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// cell is the table text of one figure: "median (ratio×)".
func cell(f *figure, m metric) string {
	if f == nil {
		return "-"
	}
	s := num(f.Median)
	if m.Ratio && f.Ratio != 0 && !math.IsNaN(f.Ratio) {
		s += fmt.Sprintf(" (%.2f×)", f.Ratio)
	}
	return s
}

// writeTable prints the medians, one row per metric and one column per
// target; markdown selects a Markdown table.
func writeTable(w io.Writer, r results, ts []*target, markdown bool) {
	var cols []*target
	for _, t := range ts {
		if t.available() {
			cols = append(cols, t)
		}
	}
	if markdown {
		fmt.Fprint(w, "| figure | unit |")
		for _, t := range cols {
			fmt.Fprintf(w, " %s |", t.Name)
		}
		fmt.Fprint(w, "\n|---|---|")
		for range cols {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if !markdown {
		fmt.Fprint(tw, "figure\tunit\t")
		for _, t := range cols {
			fmt.Fprintf(tw, "%s\t", t.Name)
		}
		fmt.Fprintln(tw)
	}
	for _, m := range metrics {
		if !m.table {
			continue
		}
		any := false
		for _, t := range cols {
			any = any || r[t.Name][m.Key] != nil
		}
		if !any {
			continue
		}
		if markdown {
			fmt.Fprintf(w, "| %s | %s |", strings.TrimSpace(m.Label), m.Unit)
			for _, t := range cols {
				fmt.Fprintf(w, " %s |", cell(r[t.Name][m.Key], m))
			}
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t", m.Label, m.Unit)
		for _, t := range cols {
			fmt.Fprintf(tw, "%s\t", cell(r[t.Name][m.Key], m))
		}
		fmt.Fprintln(tw)
	}
	if !markdown {
		tw.Flush()
	}
}

// report is the JSON document.
type report struct {
	Started  string                        `json:"started"`
	Seconds  float64                       `json:"seconds"`
	Mode     string                        `json:"mode"`
	Machine  machine                       `json:"machine"`
	Load     map[string]string             `json:"loadavg"`
	Busy     map[string]busy               `json:"cpu"`
	Settings map[string]any                `json:"settings"`
	Targets  []*target                     `json:"targets"`
	Metrics  []metric                      `json:"metrics"`
	Results  map[string]map[string]*figure `json:"results"`
	Idle     []idleResult                  `json:"idle"`
	IdleHow  string                        `json:"idle_method"`
	Goals    []goal                        `json:"goals"`
	Errors   []string                      `json:"errors"`
	// TLS holds the figures of the TLS part (-tls), by target then key.
	TLS results `json:"tls,omitempty"`
	// Noisy is the noisy-neighbour part (-noisy, noisy.go).
	Noisy *noisyResult `json:"noisy_neighbour,omitempty"`
}

// MarshalJSON writes NaN (a missing figure) as null.
func (f *figure) MarshalJSON() ([]byte, error) {
	type plain struct {
		Samples []*float64 `json:"samples"`
		Median  *float64   `json:"median"`
		Ratio   *float64   `json:"ratio_to_direct,omitempty"`
	}
	p := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	out := plain{Median: p(f.Median)}
	if f.Ratio != 0 {
		out.Ratio = p(f.Ratio)
	}
	for _, s := range f.Samples {
		out.Samples = append(out.Samples, p(s))
	}
	return json.Marshal(out)
}

// MarshalJSON writes NaN (a missing figure) as null.
func (g goal) MarshalJSON() ([]byte, error) {
	type plain goal
	p := plain(g)
	if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
		p.Value = 0
		p.Absent = true
	}
	return json.Marshal(p)
}

func writeJSON(path string, rep *report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// writeMarkdown writes the whole report as Markdown: conditions, the table
// of medians, the idle connections and the goals.
func writeMarkdown(w io.Writer, rep *report, ts []*target) {
	m := rep.Machine
	fmt.Fprintf(w, "Run %s (%s mode, %.0f s): %d CPUs, %s, Linux %s, %s, %s.\n\n", rep.Started, rep.Mode, rep.Seconds, m.NProc, m.CPUModel, m.Kernel, m.MemTotal, m.Go)
	b, r := rep.Busy["before"], rep.Busy["run"]
	fmt.Fprintf(w, "How busy: before the run loadavg %s, CPU %.0f%% busy / %.0f%% idle / %.1f%% steal; during the run %.0f%% busy / %.0f%% idle / %.1f%% steal, loadavg %s at the end.\n\n",
		rep.Load["start"], b.BusyPct, b.IdlePct, b.StealPct, r.BusyPct, r.IdlePct, r.StealPct, rep.Load["end"])
	keys := make([]string, 0, len(rep.Settings))
	for k := range rep.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprint(w, "Settings:")
	for _, k := range keys {
		v, _ := json.Marshal(rep.Settings[k])
		fmt.Fprintf(w, " %s=%s", k, v)
	}
	fmt.Fprint(w, "\n\n")
	writeTable(w, rep.Results, ts, true)
	for _, t := range ts {
		if !t.available() {
			fmt.Fprintf(w, "\n%s: not available: %s\n", t.Name, t.Reason)
		}
	}
	if len(rep.Idle) > 0 {
		fmt.Fprintf(w, "\nIdle connections: %s\n\n", rep.IdleHow)
		fmt.Fprintln(w, "| forwarder | connections | VmRSS before | VmRSS with them | per connection | fds per connection | projected to the full count |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
		for _, i := range rep.Idle {
			if i.Error != "" {
				fmt.Fprintf(w, "| %s | error: %s | | | | | |\n", i.Target, i.Error)
				continue
			}
			proj := "-"
			if i.ProjMiB > 0 {
				proj = fmt.Sprintf("%.1f MiB at %d", i.ProjMiB, i.Want)
			}
			fmt.Fprintf(w, "| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB | %.1f | %s |\n", i.Target, i.Conns, i.BaseMiB, i.RSSMiB, i.KiBPerConn, i.FDsPerConn, proj)
		}
	}
	if rep.Noisy != nil {
		writeNoisyMarkdown(w, rep.Noisy)
	}
	fmt.Fprintln(w, "\n| goal | want | got | |\n|---|---|---|---|")
	for _, g := range rep.Goals {
		state := "missed"
		switch {
		case g.Absent:
			state = "n/a"
		case g.Met:
			state = "met"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", g.What, g.Want, g.Got, state)
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\nFailed measurements:\n\n")
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "- %s\n", e)
		}
	}
}
