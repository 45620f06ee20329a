package config

import "github.com/tunnelwasm/tunnel/host/plugin"

// GuestMetrics returns the metrics the Runner's plugins define themselves
// (ABI v2 metric_define; plugin.Runtime.GuestMetrics), for the admin
// endpoint's /metrics (admin.GuestMetricsSource); nil before Start and
// after Close.
func (r *Runner) GuestMetrics() []plugin.GuestMetric {
	r.mu.Lock()
	rt := r.rt
	r.mu.Unlock()
	if rt == nil {
		return nil
	}
	return rt.GuestMetrics()
}
