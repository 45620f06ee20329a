//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseIperf3(t *testing.T) {
	for _, tc := range []struct {
		file  string
		bytes int64
		bps   float64
	}{
		// Recorded with iperf 3.12 on loopback, -t 1 -J, with -P 1 and -P 8.
		{"iperf3-1stream.json", 2481061888, 19846927196.751457},
		{"iperf3-8streams.json", 2401239040, 18997275811.8381},
	} {
		r, err := parseIperf3(read(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if r.Bytes != tc.bytes || r.BitsPerSecond != tc.bps || r.Seconds < 1 || r.Seconds > 1.02 {
			t.Errorf("%s: got %+v, want %d bytes at %v bit/s in about 1 s", tc.file, r, tc.bytes, tc.bps)
		}
	}
}

func TestParseIperf3Errors(t *testing.T) {
	_, err := parseIperf3(read(t, "iperf3-error.json"))
	if err == nil || err.Error() != "iperf3: unable to connect to server: Connection refused" {
		t.Errorf("refused: got %v", err)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"end":{}}`, "iperf3 JSON: no end.sum_received"},
		{`{"end":{"sum_received":{"seconds":1,"bytes":0,"bits_per_second":0}}}`, "iperf3: nothing received (0 bytes in 1.000 s)"},
		{`not json`, "iperf3 JSON: invalid character 'o' in literal null (expecting 'u')"},
	} {
		if _, err := parseIperf3([]byte(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseRedisCSV(t *testing.T) {
	// Recorded with redis-benchmark 7.0.15: -t get,set -c 50 -n 50000 --csv.
	res, err := parseRedisCSV(read(t, "redis-benchmark-7.0.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]redisResult{
		"SET": {Test: "SET", RPS: 147058.83, P50: 0.215, P99: 0.447},
		"GET": {Test: "GET", RPS: 145348.83, P50: 0.215, P99: 0.495},
	}
	if len(res) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(res), len(want), res)
	}
	for k, w := range want {
		if res[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, res[k], w)
		}
	}
}

func TestParseRedisCSVOld(t *testing.T) {
	// redis-benchmark before 6.2: no header, request rate only.
	res, err := parseRedisCSV([]byte("\"SET\",\"98039.22\"\n\"GET\",\"99009.90\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if g := res["GET"]; g.RPS != 99009.90 || !math.IsNaN(g.P50) || !math.IsNaN(g.P99) {
		t.Errorf("GET: got %+v, want 99009.90 req/s and no latencies", g)
	}
	for _, tc := range []struct{ in, want string }{
		{"", `redis-benchmark CSV: no results in ""`},
		{"\"test\",\"rps\"\n\"SET\",\"fast\"\n", `redis-benchmark CSV line 2: rps: strconv.ParseFloat: parsing "fast": invalid syntax`},
		{"\"test\",\"rps\",\"p50_latency_ms\"\n\"SET\",\"1\"\n", "redis-benchmark CSV line 2: no p50_latency_ms column"},
		{"\"SET\",\"0\"\n", "redis-benchmark CSV line 1: SET: no request rate"},
	} {
		if _, err := parseRedisCSV([]byte(tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestMedianRatioPercentile(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5}, 5},
		{[]float64{nan, 7, 1, math.Inf(1)}, 4},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
	if got := ratio(5.3, 10); got != 0.53 {
		t.Errorf("ratio(5.3, 10) = %v", got)
	}
	for _, tc := range [][2]float64{{1, 0}, {nan, 1}, {1, nan}} {
		if got := ratio(tc[0], tc[1]); !math.IsNaN(got) {
			t.Errorf("ratio(%v, %v) = %v, want NaN", tc[0], tc[1], got)
		}
	}
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p50, p99, p10 := percentile(sorted, 50), percentile(sorted, 99), percentile(sorted, 10); p50 != 5 || p99 != 10 || p10 != 1 {
		t.Errorf("percentiles 50, 99, 10 = %v, %v, %v; want 5, 10, 1", p50, p99, p10)
	}
}

func TestSummarize(t *testing.T) {
	r := results{}
	for _, v := range []float64{20, 18, 19} {
		r.add("direct", "bulk1_gbit_s", v)
	}
	for _, v := range []float64{9, 10, 11} {
		r.add("tunnel", "bulk1_gbit_s", v)
	}
	r.add("tunnel", "bulk1_cpu_s_per_gib", 0.3)
	r.summarize()
	if f := r["tunnel"]["bulk1_gbit_s"]; f.Median != 10 || math.Abs(f.Ratio-10.0/19) > 1e-12 {
		t.Errorf("tunnel bulk: got median %v ratio %v, want 10 and %v", f.Median, f.Ratio, 10.0/19)
	}
	if f := r["direct"]["bulk1_gbit_s"]; f.Ratio != 1 {
		t.Errorf("direct ratio = %v, want 1", f.Ratio)
	}
	if f := r["tunnel"]["bulk1_cpu_s_per_gib"]; f.Ratio != 0 {
		t.Errorf("CPU per GiB has no ratio to direct, got %v", f.Ratio)
	}
	// NaN figures become null in the JSON.
	r.add("tunnel", "redis1_get_p99_ms", math.NaN())
	r.summarize()
	data, err := json.Marshal(r["tunnel"]["redis1_get_p99_ms"])
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"samples":[null],"median":null}` {
		t.Errorf("NaN figure JSON = %s", data)
	}
	var sb strings.Builder
	writeTable(&sb, r, []*target{{Name: "direct"}, {Name: "tunnel"}, {Name: "socat", Reason: "not installed"}}, true)
	wantMD := "| figure | unit | direct | tunnel |\n|---|---|---:|---:|\n" +
		"| bulk, 1 stream | Gbit/s | 19.0 (1.00×) | 10.0 (0.53×) |\n" +
		"| CPU per GiB, 1 stream | s | - | 0.300 |\n" +
		"| GET p99, 1 client | ms | - | - |\n"
	if sb.String() != wantMD {
		t.Errorf("markdown table:\n%s\nwant:\n%s", sb.String(), wantMD)
	}
}

func TestGoals(t *testing.T) {
	r := results{}
	add := func(target, key string, v float64) { r.add(target, key, v) }
	add("direct", "redis1_get_rps", 100)
	add("nginx", "redis1_get_rps", 46)
	add("tunnel", "redis1_get_rps", 50)
	add("tunnel-noop", "redis1_get_rps", 44)
	add("nginx", "conn16_cpu_us_per_conn", 40)
	add("tunnel", "conn16_cpu_us_per_conn", 72)
	add("naive", "redis50_cpu_us_per_req", 20)
	add("tunnel", "redis50_cpu_us_per_req", 18)
	add("naive", "redis1_cpu_us_per_req", 60)
	add("tunnel", "redis1_cpu_us_per_req", 60)
	r.summarize()
	gs := r.goals([]idleResult{{Target: "tunnel-noop", Want: 10000, Conns: 9900, RSSMiB: 80, ProjMiB: 81}}, 10000)
	byWhat := map[string]goal{}
	for _, g := range gs {
		byWhat[g.What] = g
	}
	for what, met := range map[string]bool{
		"tunnel vs nginx: redis GET, 1 client":                      true,
		"tunnel vs nginx: CPU per conn, 16 at a time":               false,
		"noop plugin vs no plugin: redis GET, 1 client":             false, // 0.88
		"10000 idle connections through tunnel-noop: VmRSS":         true,
		"tunnel vs naive Go forwarder: CPU per request, 50 clients": true,
		"tunnel vs naive Go forwarder: CPU per request, 1 client":   false, // equal is not lower
	} {
		g, ok := byWhat[what]
		if !ok || g.Absent || g.Met != met {
			t.Errorf("%s: got %+v, want met=%v", what, g, met)
		}
	}
	if g := byWhat["tunnel vs nginx: bulk, 1 stream"]; !g.Absent {
		t.Errorf("bulk goal without figures should be absent: %+v", g)
	}
	if g := byWhat["10000 idle connections through tunnel-noop: VmRSS"]; g.Value != 81 || !strings.Contains(g.Got, "81.0 MiB projected to 10000") {
		t.Errorf("idle goal uses the projection: %+v", g)
	}
	// One sample each: nothing to pair.
	if g := byWhat["tunnel vs nginx: redis GET, 1 client"]; strings.Contains(g.Got, "per round") {
		t.Errorf("per-round ratios from one round: %+v", g)
	}
}

// TestGoalsPerRound: a goal's text gives the per-round ratios' range and
// median, pairing the samples of the same round and leaving out a round
// that failed for either side, even when both sides miss one (equal
// counts, different rounds); with fewer than two pairs it gives none.
func TestGoalsPerRound(t *testing.T) {
	r := results{}
	for _, s := range []struct {
		target, key string
		round       int
		v           float64
	}{
		{"nginx", "redis50_get_rps", 0, 100}, {"tunnel", "redis50_get_rps", 0, 90},
		{"nginx", "redis50_get_rps", 1, 80}, {"tunnel", "redis50_get_rps", 1, 88},
		{"nginx", "redis50_get_rps", 2, 120}, {"tunnel", "redis50_get_rps", 2, 120},
		// Round 3 failed for the tunnel, round 4 for nginx: three samples
		// each, of which rounds 0-2 pair up.
		{"nginx", "redis50_get_rps", 3, 50}, {"tunnel", "redis50_get_rps", 4, 500},
		{"tunnel-capture", "redis50_get_rps", 0, 90}, {"tunnel-capture", "redis50_get_rps", 3, 80},
	} {
		r.addRound(s.target, s.key, s.round, s.v)
	}
	r.summarize()
	byWhat := map[string]goal{}
	for _, g := range r.goals(nil, 10000) {
		byWhat[g.What] = g
	}
	// Rounds 0-2: 0.90, 1.10, 1.00 (by index, the fourth samples would
	// have paired 500 with 50).
	if g := byWhat["tunnel vs nginx: redis GET, 50 clients"]; !strings.HasSuffix(g.Got, "; per round 0.90–1.10, median 1.00") {
		t.Errorf("tunnel vs nginx: %+v", g)
	}
	// The capture and the tunnel share only round 0.
	if g := byWhat["capture vs no capture: redis GET, 50 clients"]; strings.Contains(g.Got, "per round") {
		t.Errorf("one common round was called a spread: %+v", g)
	}
}

func TestProcParsing(t *testing.T) {
	// A command name with spaces and parentheses; fields 14-17 are 1000+200+30+4.
	line := "4242 (my (weird) proc) S 17 4242 4242 0 -1 4194560 1 2 3 4 1000 200 30 4 20 0 3 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	ppid, ticks, err := parseProcStat(line)
	if err != nil || ppid != 17 || ticks != 1234 {
		t.Errorf("parseProcStat = %d, %d, %v; want 17, 1234", ppid, ticks, err)
	}
	if _, _, err := parseProcStat("12 (x) S 1 2"); err == nil {
		t.Error("short stat line: no error")
	}
	status := "Name:\ttunnel\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"
	if hwm, rss, none := parseStatusKB(status, "VmHWM"), parseStatusKB(status, "VmRSS"), parseStatusKB(status, "VmSwap"); hwm != 20480 || rss != 10240 || none != -1 {
		t.Errorf("status fields = %d, %d, %d", hwm, rss, none)
	}
	a, err := parseProcStatCPU("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := parseProcStatCPU("cpu  200 0 100 1540 20 0 0 140 0 0\n")
	if got := busyBetween(a, b); got != (busy{BusyPct: 15, IdlePct: 75, StealPct: 10}) {
		t.Errorf("busy = %+v, want 15%% busy, 75%% idle, 10%% steal", got)
	}
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n" +
		"   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n"
	if !listeningPort(tcp, 8080) || listeningPort(tcp, 8081) || listeningPort(tcp, 80) {
		t.Error("listeningPort: want 8080 listening, 8081 (established) and 80 not")
	}
	if !bytes.Contains([]byte(truncate("abcdef", 3)), []byte("abc...")) {
		t.Error("truncate")
	}
}
