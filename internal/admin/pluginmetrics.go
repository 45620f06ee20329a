package admin

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelwasm/tunnel/host/plugin"
)

// GuestMetricsSource is implemented by a Source whose plugins define
// metrics of their own (ABI v2 metric_define): they are served as
// tunnel_plugin_<plugin>_<name>, with a route label and the plugin's
// labels (see sdk/ABI.md).
type GuestMetricsSource interface {
	// GuestMetrics returns every series the plugins defined
	// (plugin.Runtime.GuestMetrics).
	GuestMetrics() []plugin.GuestMetric
}

// ownPluginFamilies are the tunnel's own metrics under the prefix of the
// plugins' (collector.go): a plugin metric with one of these names is not
// served, so that it cannot break the scrape.
var ownPluginFamilies = map[string]bool{
	"tunnel_plugin_calls_total":           true,
	"tunnel_plugin_call_duration_seconds": true,
	"tunnel_plugin_instances":             true,
}

// guestCollector serves the metrics the plugins define. It is unchecked
// (Describe sends nothing): the plugins define their metrics at run time.
type guestCollector struct{ src Source }

// Describe sends nothing: the set of metrics changes as plugins define
// them and reloads replace them.
func (c *guestCollector) Describe(chan<- *prometheus.Desc) {}

// family is one exported metric name: every series of it must have the
// same kind, label names and bounds.
type family struct {
	desc   *prometheus.Desc
	first  plugin.GuestMetric
	series map[string]*plugin.GuestMetric // by label values
	order  []string
}

// Collect sends every series, adding up duplicates (the same plugin in two
// links of one route's chain with the same config shares one store, so
// those are not duplicates; two plugins named alike with other configs
// are).
func (c *guestCollector) Collect(ch chan<- prometheus.Metric) {
	gs, ok := c.src.(GuestMetricsSource)
	if !ok {
		return
	}
	fams := map[string]*family{}
	var order []string
	for _, m := range gs.GuestMetrics() {
		if ownPluginFamilies[m.FullName] {
			continue
		}
		names := []string{"route"}
		values := []string{m.Route}
		for _, l := range m.Labels {
			names = append(names, l.Name)
			values = append(values, l.Value)
		}
		f := fams[m.FullName]
		if f == nil {
			help := "Plugin " + m.Plugin + "'s " + m.Kind.String() + " " + m.Name + "."
			f = &family{desc: prometheus.NewDesc(m.FullName, help, names, nil), first: m, series: map[string]*plugin.GuestMetric{}}
			fams[m.FullName] = f
			order = append(order, m.FullName)
		} else if !compatible(f.first, m) {
			continue // another plugin's metric of that name came first
		}
		key := strings.Join(values, "\x00")
		if s := f.series[key]; s != nil {
			s.Value += m.Value
			s.Count += m.Count
			s.Sum += m.Sum
			for i := range s.Buckets {
				s.Buckets[i] += m.Buckets[i]
			}
			continue
		}
		m.Buckets = append([]uint64(nil), m.Buckets...)
		f.series[key] = &m
		f.order = append(f.order, key)
	}
	for _, name := range order {
		f := fams[name]
		for _, key := range f.order {
			m := f.series[key]
			values := strings.Split(key, "\x00")
			var pm prometheus.Metric
			var err error
			switch m.Kind {
			case plugin.MetricCounter:
				pm, err = prometheus.NewConstMetric(f.desc, prometheus.CounterValue, float64(m.Value), values...)
			case plugin.MetricGauge:
				pm, err = prometheus.NewConstMetric(f.desc, prometheus.GaugeValue, float64(m.Value), values...)
			case plugin.MetricHistogram:
				buckets := make(map[float64]uint64, len(m.Bounds))
				for i, b := range m.Bounds {
					buckets[b] = m.Buckets[i]
				}
				pm, err = prometheus.NewConstHistogram(f.desc, m.Count, m.Sum, buckets, values...)
			default:
				continue
			}
			if err == nil {
				ch <- pm
			}
		}
	}
}

// compatible reports whether two series can share one metric name.
func compatible(a, b plugin.GuestMetric) bool {
	if a.Kind != b.Kind || len(a.Labels) != len(b.Labels) || len(a.Bounds) != len(b.Bounds) {
		return false
	}
	for i := range a.Labels {
		if a.Labels[i].Name != b.Labels[i].Name {
			return false
		}
	}
	for i := range a.Bounds {
		if a.Bounds[i] != b.Bounds[i] {
			return false
		}
	}
	return true
}
