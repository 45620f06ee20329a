package sdk

import (
	"errors"
	"strings"
	"unsafe"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Plugin metrics (ABI v2). A plugin defines counters, gauges and histograms
// by name with fixed label values; the host adds them up across the
// plugin's instances and exports them on the tunnel's /metrics as
// tunnel_plugin_<plugin>_<name>, with a route label and the plugin's own
// labels. Define them in the factory (or in any callback: defining the same
// name and labels again returns the same metric, so a handler may define a
// series the first time it meets a label value); then Add, Set and Observe
// cost one host call and allocate nothing. Not in the initialiser of a
// package-level var (var hits = sdk.NewCounter(...)): package
// initialisation runs before the host calls the plugin, so that metric
// does nothing, silently (its Err is [ErrNotAllowed]; there is no host to
// log to yet). Declare the var and assign it in the factory.
//
// Names follow Prometheus: [a-zA-Z_][a-zA-Z0-9_]*, up to 128 bytes; a
// counter's name should end in _total. Labels are given as name, value
// pairs:
//
//	blocked := sdk.NewCounter("blocked_total", "command", "FLUSHALL")
//	blocked.Add(1)
//
// Label names follow the same rule (not starting with __, and not "route",
// which the host adds); values are any UTF-8 up to 128 bytes without a
// newline; at most 8 labels. A plugin has at most 256 series. A definition
// that breaks a rule, or reuses a name with another kind, other label names
// or other bounds, fails: the returned metric does nothing, its Err says
// why, and the failure is logged.

// ErrMetricConflict: the metric's name is already defined with another
// kind, other label names or other bucket bounds.
var ErrMetricConflict = errors.New("sdk: metric name already defined with another kind, label names or bounds")

// metric is the host's id of a series plus one, or a non-positive status
// when the definition failed (0: never defined).
type metric int32

func (m metric) err() error {
	switch {
	case m > 0:
		return nil
	case m == 0:
		return ErrNotAllowed
	case m == abi.StatusAlreadySet:
		return ErrMetricConflict
	}
	return statusErr(int32(m))
}

// labelBuf is reused to encode label pairs for metric_define.
var labelBuf []byte

func define(kind int32, name string, bounds []float64, labels []string) metric {
	in := active
	if in == nil {
		return 0
	}
	if len(labels)%2 != 0 {
		Log(LevelError, "sdk: metric "+name+": labels must be name, value pairs (an odd number was given)")
		return abi.StatusBadArgument
	}
	b := labelBuf[:0]
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(append(append(b, labels[i]...), '='), labels[i+1]...)
	}
	labelBuf = b
	id := in.host.MetricDefine(kind, unsafe.Slice(unsafe.StringData(name), len(name)), b, bounds)
	if id < 0 {
		m := metric(id)
		Log(LevelError, "sdk: metric "+name+" {"+strings.Join(labels, ",")+"}: "+m.err().Error())
		return m
	}
	return metric(id + 1)
}

// A Counter is a count that only goes up (requests, bytes, blocked
// commands). The zero Counter does nothing.
type Counter struct{ m metric }

// NewCounter defines (or finds, when already defined) the counter name with
// the given label name, value pairs. Call it from a callback.
func NewCounter(name string, labels ...string) Counter {
	return Counter{define(abi.MetricCounter, name, nil, labels)}
}

// Add adds n (>= 0; a negative n is ignored by the host) to the counter.
func (c Counter) Add(n int64) {
	if c.m > 0 && active != nil {
		active.host.MetricAdd(int32(c.m-1), n)
	}
}

// Inc adds 1 to the counter.
func (c Counter) Inc() { c.Add(1) }

// Err returns why the counter's definition failed, or nil.
func (c Counter) Err() error { return c.m.err() }

// A Gauge is a value that goes up and down (open sessions, queue length).
// The host adds the instances' Add calls into one value; Set replaces it.
// The zero Gauge does nothing.
type Gauge struct{ m metric }

// NewGauge defines (or finds) the gauge name with the given label name,
// value pairs. Call it from a callback.
func NewGauge(name string, labels ...string) Gauge {
	return Gauge{define(abi.MetricGauge, name, nil, labels)}
}

// Set sets the gauge to v.
func (g Gauge) Set(v int64) {
	if g.m > 0 && active != nil {
		active.host.MetricSet(int32(g.m-1), v)
	}
}

// Add adds n (which may be negative) to the gauge.
func (g Gauge) Add(n int64) {
	if g.m > 0 && active != nil {
		active.host.MetricAdd(int32(g.m-1), n)
	}
}

// Err returns why the gauge's definition failed, or nil.
func (g Gauge) Err() error { return g.m.err() }

// A Histogram counts observations (latencies, sizes) in buckets. The zero
// Histogram does nothing.
type Histogram struct{ m metric }

// NewHistogram defines (or finds) the histogram name with the given upper
// bounds of its buckets (1 to 32, finite and increasing; +Inf is implied)
// and label name, value pairs. Call it from a callback.
func NewHistogram(name string, bounds []float64, labels ...string) Histogram {
	return Histogram{define(abi.MetricHistogram, name, bounds, labels)}
}

// Observe records v.
func (h Histogram) Observe(v float64) {
	if h.m > 0 && active != nil {
		active.host.MetricObserve(int32(h.m-1), v)
	}
}

// Err returns why the histogram's definition failed, or nil.
func (h Histogram) Err() error { return h.m.err() }
