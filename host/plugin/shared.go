package plugin

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tunnelwasm/tunnel/host/internal/wasm"
	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Defaults of the shared state's bounds ([Options]).
const (
	DefaultStateMaxValue = abi.DefaultStateMaxValueLen
	DefaultStateMaxTotal = abi.DefaultStateMaxTotal
)

// MetricPrefix starts the exported name of every plugin-defined metric:
// tunnel_plugin_<plugin>_<name>.
const MetricPrefix = "tunnel_plugin_"

// A Registry keeps the plugins' shared state and metrics (ABI v2) apart
// from the plugins themselves, so that they survive what replaces a
// Plugin with an identical one: a reload that keeps a route's plugin with
// the same name, route, configuration, state bounds and module (the
// .wasm's content) hands the new Plugin the old one's store and metrics.
// Anything else starts empty; an entry is dropped when the last Plugin
// using it is closed. (An instance failure never touches it: the entry
// belongs to the Plugin, not to an instance.)
//
// A Runtime uses the Registry of its [RuntimeOptions], or one of its own.
// Give one Registry to the Runtime and to whatever exports the metrics
// ([Registry.GuestMetrics]). A Registry is safe for concurrent use.
type Registry struct {
	mu sync.Mutex
	m  map[sharedKey]*sharedEntry
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{m: map[sharedKey]*sharedEntry{}} }

type sharedKey struct {
	route, name        string
	config, module     [sha256.Size]byte
	maxValue, maxTotal int
}

type sharedEntry struct {
	key    sharedKey
	refs   int
	shared wasm.Shared
}

// acquire returns the entry of key, made if new, with one more reference.
func (r *Registry) acquire(key sharedKey) *sharedEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[key]
	if e == nil {
		e = &sharedEntry{key: key, shared: wasm.Shared{
			State:   wasm.NewState(key.maxValue, key.maxTotal),
			Metrics: wasm.NewMetrics(),
		}}
		r.m[key] = e
	}
	e.refs++
	return e
}

// release drops a reference; the last one drops the entry.
func (r *Registry) release(e *sharedEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.refs--; e.refs == 0 && r.m[e.key] == e {
		delete(r.m, e.key)
	}
}

// MetricKind is the kind of a plugin-defined metric.
type MetricKind int32

// Metric kinds, as in sdk/ABI.md.
const (
	MetricCounter   MetricKind = abi.MetricCounter
	MetricGauge     MetricKind = abi.MetricGauge
	MetricHistogram MetricKind = abi.MetricHistogram
)

// String returns "counter", "gauge" or "histogram".
func (k MetricKind) String() string {
	switch k {
	case MetricCounter:
		return "counter"
	case MetricGauge:
		return "gauge"
	case MetricHistogram:
		return "histogram"
	}
	return fmt.Sprintf("MetricKind(%d)", int32(k))
}

// Label is one label of a metric series.
type Label struct{ Name, Value string }

// GuestMetric is a snapshot of one series of a plugin-defined metric, added up
// across the plugin's instances.
type GuestMetric struct {
	// Route is the route of the plugin ([Options].Route; may be empty).
	Route string
	// Plugin is the plugin's name.
	Plugin string
	// Name is the name the plugin defined; FullName is the exported one,
	// MetricPrefix + the plugin's name (with every byte outside
	// [a-zA-Z0-9_] made '_') + "_" + Name.
	Name, FullName string
	Kind           MetricKind
	// Labels are the plugin's labels, in the order it gave them (the
	// route is not among them).
	Labels []Label
	// Value is a counter's or gauge's value.
	Value int64
	// Bounds are a histogram's bucket upper bounds; Buckets counts the
	// observations at or below each (cumulative); Count and Sum are the
	// number and sum of all observations.
	Bounds  []float64
	Buckets []uint64
	Count   uint64
	Sum     float64
}

// MetricName returns the exported name of metric name of plugin.
func MetricName(plugin, name string) string {
	var b strings.Builder
	b.WriteString(MetricPrefix)
	for _, c := range []byte(plugin) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	b.WriteString(name)
	return b.String()
}

func (e *sharedEntry) metrics() []GuestMetric {
	var out []GuestMetric
	for _, s := range e.shared.Metrics.Series() {
		v := s.Load()
		m := GuestMetric{
			Route: e.key.route, Plugin: e.key.name,
			Name: s.Name, FullName: MetricName(e.key.name, s.Name),
			Kind:   MetricKind(s.Kind),
			Value:  v.Value,
			Bounds: slices.Clone(s.Bounds), Buckets: v.Buckets, Count: v.Count, Sum: v.Sum,
		}
		for _, l := range s.Labels {
			m.Labels = append(m.Labels, Label(l))
		}
		out = append(out, m)
	}
	return out
}

// GuestMetrics returns every series of every plugin of the Registry, by route
// and plugin, in each plugin's order of definition.
func (r *Registry) GuestMetrics() []GuestMetric {
	r.mu.Lock()
	entries := make([]*sharedEntry, 0, len(r.m))
	for _, e := range r.m {
		entries = append(entries, e)
	}
	r.mu.Unlock()
	slices.SortFunc(entries, func(a, b *sharedEntry) int {
		if c := strings.Compare(a.key.route, b.key.route); c != 0 {
			return c
		}
		return strings.Compare(a.key.name, b.key.name)
	})
	var out []GuestMetric
	for _, e := range entries {
		out = append(out, e.metrics()...)
	}
	return out
}

// GuestMetrics returns the series the plugin's guest defined, added up across
// its instances (ABI v2 metric_define).
func (p *Plugin) GuestMetrics() []GuestMetric { return p.shared.metrics() }

// State returns a copy of the value of key in the plugin's shared state
// (ABI v2 state_*), and whether it is set.
func (p *Plugin) State(key string) ([]byte, bool) { return p.shared.shared.State.Get(key) }

// StateSize returns the number of keys in the plugin's shared state and the
// bytes of its keys and values, which Options.StateMaxTotal bounds.
func (p *Plugin) StateSize() (keys, bytes int) { return p.shared.shared.State.Len() }

// GuestMetrics returns the series the plugins of the Runtime defined
// (its Registry's, [Registry.GuestMetrics]).
func (r *Runtime) GuestMetrics() []GuestMetric { return r.reg.GuestMetrics() }

// CollectGuestMetrics returns the series of plugins, each plugin's store
// once even when several of them share it (the same plugin, route and
// config twice), in the order of plugins.
func CollectGuestMetrics(plugins ...*Plugin) []GuestMetric {
	var out []GuestMetric
	seen := map[*sharedEntry]bool{}
	for _, p := range plugins {
		if !seen[p.shared] {
			seen[p.shared] = true
			out = append(out, p.shared.metrics()...)
		}
	}
	return out
}
