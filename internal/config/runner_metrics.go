package config

import (
	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// Listeners returns the state of every route's listener
// (host.Proxy.Listeners), for the admin endpoint's /readyz.
func (r *Runner) Listeners() []host.ListenerState { return r.proxy.Listeners() }

// PluginMetrics returns the figures of the plugins the Runner has run
// (plugin.Runtime.Metrics); nil before Start and after Close. It waits for
// a reload in progress.
func (r *Runner) PluginMetrics() []plugin.Metrics {
	r.mu.Lock()
	rt := r.rt
	r.mu.Unlock()
	if rt == nil {
		return nil
	}
	return rt.Metrics()
}
