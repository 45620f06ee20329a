package plugin

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/wasm"
	"github.com/tunnelwasm/tunnel/internal/histo"
)

// The callbacks counted by [Metrics], as its label values name them.
const (
	callOpen  = iota // tunnel_on_open
	callData         // tunnel_on_data
	callClose        // tunnel_on_close
	callTimer        // tunnel_on_timer
	numCalls
)

var callNames = [numCalls]string{callOpen: "open", callData: "data", callClose: "close", callTimer: "timer"}

// The results of a call, as [Metrics] names them.
const (
	resultOK        = iota // returned normally
	resultRejected         // tunnel_on_open refused the connection
	resultTimeout          // cut off at call_timeout
	resultViolation        // broke the ABI (a bad return value, over max_output, ...)
	resultError            // trapped (a panic, out of memory, ...) or any other failure
	numResults
)

var resultNames = [numResults]string{resultOK: "ok", resultRejected: "rejected", resultTimeout: "timeout", resultViolation: "violation", resultError: "error"}

// callMetrics are the call counters of every Plugin of one name made from a
// Runtime: kept by the Runtime, so they carry on across reloads, which make
// new Plugins of the same name. Updating them is atomic adds only.
type callMetrics struct {
	calls [numCalls][numResults]atomic.Uint64
	dur   [numCalls]*histo.Histogram
}

// metricsFor returns the call counters of the plugins named name, made on
// first use.
func (r *Runtime) metricsFor(name string) *callMetrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]*callMetrics{}
	}
	m := r.calls[name]
	if m == nil {
		m = &callMetrics{}
		for i := range m.dur {
			m.dur[i] = histo.New(histo.CallBounds)
		}
		r.calls[name] = m
	}
	return m
}

// timeEvery is how often a call is timed: one in timeEvery, chosen by the
// connection's ID and the call's rank in it, so every rank is sampled over
// the connections. A clock read costs 20 ns on most machines but 200 ns and
// more on some virtual ones (this repository's CI), more than a trivial
// guest call: reading it twice around every call would cost more than the
// call.
const timeEvery = 16

// clock returns the time a call of f begins, or the zero Time when this
// call is not one to time.
func (m *callMetrics) clock(f *wasmFilter) time.Time {
	f.calls++
	if m == nil || (uint64(f.calls)+f.info.ID)%timeEvery != 0 {
		return time.Time{}
	}
	return time.Now()
}

// done counts a call of callback cb that began at start and ended with err
// (nil: it returned normally; rejected: tunnel_on_open refused).
func (m *callMetrics) done(cb int, start time.Time, err error, rejected bool) {
	if m == nil {
		return
	}
	if !start.IsZero() {
		m.dur[cb].Observe(time.Since(start))
	}
	res := resultOK
	switch {
	case err != nil:
		res = failureResult(err)
	case rejected:
		res = resultRejected
	}
	m.calls[cb][res].Add(1)
}

// failureResult classifies a failed call (apart, so that the successful
// ones allocate nothing for errors.As).
func failureResult(err error) int {
	var v *wasm.Violation
	switch {
	case errors.Is(err, wasm.ErrTimeout):
		return resultTimeout
	case errors.As(err, &v):
		return resultViolation
	}
	return resultError
}

// Metrics are the figures of the plugins of one name in a Runtime, for the
// admin endpoint: calls by callback and result, call durations by callback,
// live instances.
type Metrics struct {
	// Plugin is the plugin's name (its block in tunnel.hcl).
	Plugin string
	// Calls counts the calls of each callback ("open", "data", "close",
	// "timer") by result ("ok", "rejected", "timeout", "violation",
	// "error"); every pair is present.
	Calls map[string]map[string]uint64
	// Durations are the calls' durations by callback, every callback
	// present: of one call in 16 (chosen evenly over the calls'
	// ranks in their connections), since reading the clock can cost
	// more than a call. Their Count is the number of calls timed.
	Durations map[string]histo.Snapshot
	// Instances is the number of live instances over the plugins of this
	// name not yet closed (a reload's old ones included while they serve
	// their connections).
	Instances int
}

// Metrics returns the figures of every plugin name the runtime has made a
// Plugin of, sorted by name. Names stay listed after their Plugins close
// (with 0 instances), so counters never go back.
func (r *Runtime) Metrics() []Metrics {
	r.mu.Lock()
	out := make([]Metrics, 0, len(r.calls))
	index := make(map[string]int, len(r.calls))
	for name, m := range r.calls {
		index[name] = len(out)
		out = append(out, m.snapshot(name))
	}
	plugins := make([]*Plugin, 0, len(r.plugins))
	for p := range r.plugins {
		plugins = append(plugins, p)
	}
	r.mu.Unlock()
	for _, p := range plugins {
		if i, ok := index[p.opts.Name]; ok {
			out[i].Instances += p.instances()
		}
	}
	slices.SortFunc(out, func(a, b Metrics) int { return strings.Compare(a.Plugin, b.Plugin) })
	return out
}

// Metrics returns the figures of the plugins of p's name in p's Runtime
// (the Plugins that a reload replaced included), with p's own instances.
func (p *Plugin) Metrics() Metrics {
	m := p.calls.snapshot(p.opts.Name)
	m.Instances = p.instances()
	return m
}

// snapshot reads m as the Metrics of the plugins named name (without
// instances).
func (m *callMetrics) snapshot(name string) Metrics {
	pm := Metrics{Plugin: name, Calls: make(map[string]map[string]uint64, numCalls), Durations: make(map[string]histo.Snapshot, numCalls)}
	for cb := range numCalls {
		byResult := make(map[string]uint64, numResults)
		for res := range numResults {
			byResult[resultNames[res]] = m.calls[cb][res].Load()
		}
		pm.Calls[callNames[cb]] = byResult
		pm.Durations[callNames[cb]] = m.dur[cb].Snapshot()
	}
	return pm
}
