package config

import (
	"fmt"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugin"
)

// Settings describes, one line per plugin and a last line for the file,
// the limits the plugins run under with the defaults filled in, then a
// line per route with TLS, server_names or accept_proxy: what `tunnel
// validate -v` prints for a valid file.
func (f *File) Settings() []string {
	var out []string
	for _, p := range f.Plugins {
		n, m := linkMemory(p)
		timeout := "call_timeout " + fmtDuration(orDuration(p.CallTimeout, plugin.DefaultCallTimeout))
		if p.Trusted {
			timeout = "trusted (no call_timeout)"
		}
		policy := "close"
		if p.FailOpen {
			policy = "bypass"
		}
		trip := fmt.Sprintf("trips after %d failures in %s, backoff %s to %s", orInt(p.TripFailures, plugin.DefaultTripFailures),
			fmtDuration(orDuration(p.TripWindow, plugin.DefaultTripWindow)), fmtDuration(plugin.MinTripBackoff),
			fmtDuration(orDuration(p.TripMaxBackoff, plugin.DefaultTripMaxBackoff)))
		if p.TripFailures < 0 {
			trip = "never trips"
		}
		out = append(out, fmt.Sprintf("plugin %q: %d × %s, %s, on_failure %s, %s, logs %d/s (burst %d)", p.Name, n, FormatSize(m), timeout, policy, trip,
			orInt(p.LogRate, plugin.DefaultLogRate), orInt(p.LogBurst, plugin.DefaultLogBurst)))
	}
	total, limit := f.PluginMemory()
	out = append(out, fmt.Sprintf("plugin memory: %s of plugin_memory_limit %s", FormatSize(total), FormatSize(limit)))
	return append(out, f.tlsSettings()...) // tls.go
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
