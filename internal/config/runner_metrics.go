package config

import (
	"errors"

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

// CannotListen reports whether err, a load's error, is a route that could
// not bind its listen address.
func CannotListen(err error) bool {
	var le *LoadError
	if !errors.As(err, &le) {
		return false
	}
	for _, d := range le.Diags {
		if d.Summary == "Cannot listen" { // applyError's diagnostic

			return true
		}
	}
	return false
}
