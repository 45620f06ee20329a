package plugintest

import (
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// State implements sdktest.Inspector: the value of key in the plugin's
// shared state, as the host keeps it.
func (p *wasmPlugin) State(key string) ([]byte, bool) { return p.plug.State(key) }

// Metric implements sdktest.Inspector: the series of the plugin's metric
// name with the given label name, value pairs, as the host adds it up.
func (p *wasmPlugin) Metric(name string, labels ...string) (sdktest.MetricValue, bool) {
	for _, m := range p.plug.GuestMetrics() {
		if m.Name != name || 2*len(m.Labels) != len(labels) {
			continue
		}
		match := true
		for i, l := range m.Labels {
			if labels[2*i] != l.Name || labels[2*i+1] != l.Value {
				match = false
				break
			}
		}
		if match {
			return sdktest.MetricValue{Kind: int32(m.Kind), Value: m.Value, Count: m.Count, Sum: m.Sum, Buckets: m.Buckets}, true
		}
	}
	return sdktest.MetricValue{}, false
}
