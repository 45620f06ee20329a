//go:build linux

package main

// The pure parts of the benchmark: parsing the tools' outputs and the
// statistics. Everything here is tested with recorded outputs in testdata/.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// iperfResult is what one iperf3 client run measured, on the receiving side.
type iperfResult struct {
	Bytes         int64   // bytes the server received
	Seconds       float64 // duration of the measurement
	BitsPerSecond float64 // received bits per second
}

// parseIperf3 reads the output of `iperf3 -c ... -J`. It returns the error
// iperf3 reported (e.g. "unable to connect to server: Connection refused")
// when there is one.
func parseIperf3(data []byte) (iperfResult, error) {
	var doc struct {
		End struct {
			SumReceived *struct {
				Seconds       float64 `json:"seconds"`
				Bytes         int64   `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if doc.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", doc.Error)
	}
	s := doc.End.SumReceived
	if s == nil {
		return iperfResult{}, errors.New("iperf3 JSON: no end.sum_received")
	}
	if s.Bytes <= 0 || s.Seconds <= 0 || s.BitsPerSecond <= 0 {
		return iperfResult{}, fmt.Errorf("iperf3: nothing received (%d bytes in %.3f s)", s.Bytes, s.Seconds)
	}
	return iperfResult{Bytes: s.Bytes, Seconds: s.Seconds, BitsPerSecond: s.BitsPerSecond}, nil
}

// redisResult is one test line of redis-benchmark's --csv output. Latencies
// are in milliseconds; they are NaN when the redis-benchmark is older than
// 6.2 (its CSV has only the request rate).
type redisResult struct {
	Test     string
	RPS      float64
	P50, P99 float64
}

// parseRedisCSV reads `redis-benchmark --csv` output: a header line
// "test","rps","avg_latency_ms",...,"p50_latency_ms",...,"p99_latency_ms",...
// then one line per test. Results are keyed by upper-case test name.
func parseRedisCSV(data []byte) (map[string]redisResult, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	out := map[string]redisResult{}
	col := map[string]int{"test": 0, "rps": 1}
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark CSV: %w", err)
		}
		if len(rec) == 0 || (len(rec) == 1 && strings.TrimSpace(rec[0]) == "") {
			continue
		}
		if strings.EqualFold(rec[0], "test") {
			for i, name := range rec {
				col[strings.ToLower(name)] = i
			}
			continue
		}
		field := func(name string) (float64, error) {
			i, ok := col[name]
			if !ok {
				return math.NaN(), nil
			}
			if i >= len(rec) {
				return 0, fmt.Errorf("redis-benchmark CSV line %d: no %s column", line, name)
			}
			v, err := strconv.ParseFloat(rec[i], 64)
			if err != nil {
				return 0, fmt.Errorf("redis-benchmark CSV line %d: %s: %w", line, name, err)
			}
			return v, nil
		}
		res := redisResult{Test: strings.ToUpper(rec[col["test"]])}
		var errs [3]error
		res.RPS, errs[0] = field("rps")
		res.P50, errs[1] = field("p50_latency_ms")
		res.P99, errs[2] = field("p99_latency_ms")
		if err := errors.Join(errs[:]...); err != nil {
			return nil, err
		}
		if math.IsNaN(res.RPS) || res.RPS <= 0 {
			return nil, fmt.Errorf("redis-benchmark CSV line %d: %s: no request rate", line, res.Test)
		}
		out[res.Test] = res
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("redis-benchmark CSV: no results in %q", truncate(string(data), 200))
	}
	return out, nil
}

// median returns the median of the finite values of xs (the mean of the two
// middle ones for an even count), or NaN when there is none.
func median(xs []float64) float64 {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio returns v/base, or NaN when either is missing or base is zero.
func ratio(v, base float64) float64 {
	if math.IsNaN(v) || math.IsNaN(base) || base == 0 {
		return math.NaN()
	}
	return v / base
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted values by
// the nearest-rank method, or NaN for no values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// parseProcStat parses the utime, stime, cutime and cstime fields of a
// /proc/<pid>/stat line and returns their sum in clock ticks, and the parent
// pid. The command name (field 2) may contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(line string) (ppid int, ticks int64, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("proc stat %q: no ')'", truncate(line, 80))
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("proc stat %q: %d fields after the name, want 15 or more", truncate(line, 80), len(f))
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("proc stat: ppid: %w", err)
	}
	for _, s := range f[11:15] { // utime stime cutime cstime
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("proc stat: cpu times: %w", err)
		}
		ticks += v
	}
	return ppid, ticks, nil
}

// parseStatusKB returns the value in KiB of a "Name:  1234 kB" line of
// /proc/<pid>/status, or -1 when the field is absent.
func parseStatusKB(status, name string) int64 {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return -1
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

// cpuTimes is the first line of /proc/stat, in clock ticks.
type cpuTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

func (c cpuTimes) total() uint64 {
	return c.User + c.Nice + c.System + c.Idle + c.IOWait + c.IRQ + c.SoftIRQ + c.Steal
}

// parseProcStatCPU parses the aggregate "cpu ..." line of /proc/stat.
func parseProcStatCPU(data string) (cpuTimes, error) {
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat cpu line: %w", err)
			}
			v[i] = n
		}
		return cpuTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
	}
	return cpuTimes{}, errors.New("/proc/stat: no aggregate cpu line")
}

// busy summarises two /proc/stat samples as percentages of all CPU time.
type busy struct {
	BusyPct  float64 `json:"busy_pct"`
	IdlePct  float64 `json:"idle_pct"`
	StealPct float64 `json:"steal_pct"`
}

func busyBetween(a, b cpuTimes) busy {
	total := float64(b.total() - a.total())
	if total <= 0 {
		return busy{BusyPct: math.NaN(), IdlePct: math.NaN(), StealPct: math.NaN()}
	}
	idle := float64((b.Idle + b.IOWait) - (a.Idle + a.IOWait))
	steal := float64(b.Steal - a.Steal)
	return busy{
		BusyPct:  100 * (total - idle - steal) / total,
		IdlePct:  100 * idle / total,
		StealPct: 100 * steal / total,
	}
}

// listeningPort reports whether a /proc/net/tcp or tcp6 table has a socket
// in state LISTEN (0A) on port.
func listeningPort(table string, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for line := range strings.Lines(table) {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		if strings.HasSuffix(f[1], want) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
