package admin

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/histo"
)

// The descriptions of the tunnel's own metrics; see the package comment.
var (
	descConnections = prometheus.NewDesc("tunnel_connections_total",
		"Connections accepted.", []string{"route"}, nil)
	descActive = prometheus.NewDesc("tunnel_connections_active",
		"Connections open now.", []string{"route"}, nil)
	descErrors = prometheus.NewDesc("tunnel_connection_errors_total",
		"Connections that ended with an error (reset, failed dial, idle timeout, filter error, TLS or no-route refusal, shutdown abort).", []string{"route"}, nil)
	descDialFailures = prometheus.NewDesc("tunnel_upstream_connect_failures_total",
		"Dials of the target that failed.", []string{"route"}, nil)
	descIdle = prometheus.NewDesc("tunnel_idle_timeouts_total",
		"Connections closed by the route's idle timeout.", []string{"route"}, nil)
	descReceived = prometheus.NewDesc("tunnel_bytes_received_total",
		"Bytes read from a peer (client or server), open connections included.", []string{"route", "peer"}, nil)
	descSent = prometheus.NewDesc("tunnel_bytes_sent_total",
		"Bytes written to a peer (client or server), open connections included.", []string{"route", "peer"}, nil)
	descClosed = prometheus.NewDesc("tunnel_connections_closed_total",
		"Connections finished, by the close reason of the access log (reason=).", []string{"route", "reason"}, nil)
	descRejected = prometheus.NewDesc("tunnel_connections_rejected_total",
		"Connections turned away: limit, denied (a filter refused it at open, or closed it before the target was dialled), tls (failed handshake), no_route (no route for its SNI name).", []string{"route", "reason"}, nil)
	descDuration = prometheus.NewDesc("tunnel_connection_duration_seconds",
		"Lifetime of finished connections, accept to close.", []string{"route"}, nil)
	descConnect = prometheus.NewDesc("tunnel_upstream_connect_duration_seconds",
		"Time the successful dials of the target took.", []string{"route"}, nil)
	descListenerUp = prometheus.NewDesc("tunnel_listener_up",
		"1 while the route's listener accepts connections, 0 once its accept loop failed.", []string{"route"}, nil)
	descAtLimit = prometheus.NewDesc("tunnel_listener_at_limit",
		"1 while the route has max_connections open (new clients wait in the backlog).", []string{"route"}, nil)
	descPluginCalls = prometheus.NewDesc("tunnel_plugin_calls_total",
		"Calls into a plugin, by callback (open, data, close, timer) and result (ok, rejected, timeout, violation, error).", []string{"plugin", "callback", "result"}, nil)
	descPluginDuration = prometheus.NewDesc("tunnel_plugin_call_duration_seconds",
		"Duration of plugin calls, by callback; one call in 16 is timed.", []string{"plugin", "callback"}, nil)
	descPluginInstances = prometheus.NewDesc("tunnel_plugin_instances",
		"Live instances of the plugin (a reload's old ones included while they serve their connections).", []string{"plugin"}, nil)
	descReloads = prometheus.NewDesc("tunnel_config_reloads_total",
		"Reloads of the configuration file, by result (success, failure).", []string{"result"}, nil)
	descReloadOK = prometheus.NewDesc("tunnel_config_last_reload_successful",
		"1 if the last load of the configuration file succeeded, else 0.", nil, nil)
	descReloadTime = prometheus.NewDesc("tunnel_config_last_reload_success_timestamp_seconds",
		"Unix time of the last successful load of the configuration file (the first one included).", nil, nil)
)

// PluginSource is implemented by a Source that runs WebAssembly plugins:
// their metrics are served too.
type PluginSource interface {
	// PluginMetrics returns the plugins' figures (plugin.Runtime.Metrics).
	PluginMetrics() []plugin.Metrics
}

// ListenerSource is implemented by a Source that knows the health of its
// listeners (host.Proxy.Listeners): /readyz fails while one is down, and
// tunnel_listener_up is served.
type ListenerSource interface {
	// Listeners returns every route listener's state.
	Listeners() []host.ListenerState
}

// ReloadSource is implemented by a Source that reloads a configuration
// file: the reload metrics are served.
type ReloadSource interface {
	// Reloads returns the reload counts so far.
	Reloads() ReloadStats
}

// ReloadStats count the loads of a configuration file.
type ReloadStats struct {
	// Succeeded and Failed count the reloads (not the first load).
	Succeeded, Failed int64
	// LastFailed reports that the last load failed.
	LastFailed bool
	// LastSuccess is when a load last succeeded (the first load
	// included); zero before.
	LastSuccess time.Time
}

// collector turns Source.Stats into metrics at each scrape.
type collector struct{ src Source }

// Describe sends the descriptions of every metric Collect may send.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descActive, descErrors, descDialFailures, descIdle, descReceived, descSent,
		descClosed, descRejected, descDuration, descConnect, descListenerUp, descAtLimit,
		descPluginCalls, descPluginDuration, descPluginInstances, descReloads, descReloadOK, descReloadTime} {
		ch <- d
	}
}

// Collect reads the Source's counters once and sends them.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	histogram := func(d *prometheus.Desc, s histo.Snapshot, labels ...string) {
		ch <- prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), s.Cumulative(), labels...)
	}
	for _, s := range c.src.Stats() {
		r := s.Route
		counter(descConnections, s.Accepted, r)
		gauge(descActive, float64(s.Active), r)
		counter(descErrors, s.Errors, r)
		counter(descDialFailures, s.DialFailures, r)
		counter(descIdle, s.IdleTimeouts, r)
		counter(descReceived, s.BytesFromClient, r, "client")
		counter(descReceived, s.BytesFromServer, r, "server")
		counter(descSent, s.BytesToClient, r, "client")
		counter(descSent, s.BytesToServer, r, "server")
		for reason, n := range s.Closed {
			counter(descClosed, n, r, reason)
		}
		for reason, n := range s.Rejected {
			counter(descRejected, n, r, reason)
		}
		if s.Duration.Counts != nil {
			histogram(descDuration, s.Duration, r)
		}
		if s.Connect.Counts != nil {
			histogram(descConnect, s.Connect, r)
		}
	}
	if ls, ok := c.src.(ListenerSource); ok {
		for _, l := range ls.Listeners() {
			gauge(descListenerUp, b2f(l.Up), l.Route)
			gauge(descAtLimit, b2f(l.AtLimit), l.Route)
		}
	}
	if ps, ok := c.src.(PluginSource); ok {
		for _, m := range ps.PluginMetrics() {
			for cb, results := range m.Calls {
				for res, n := range results {
					counter(descPluginCalls, int64(n), m.Plugin, cb, res)
				}
			}
			for cb, d := range m.Durations {
				histogram(descPluginDuration, d, m.Plugin, cb)
			}
			gauge(descPluginInstances, float64(m.Instances), m.Plugin)
		}
	}
	if rs, ok := c.src.(ReloadSource); ok {
		st := rs.Reloads()
		counter(descReloads, st.Succeeded, "success")
		counter(descReloads, st.Failed, "failure")
		gauge(descReloadOK, b2f(!st.LastFailed && !st.LastSuccess.IsZero()))
		if !st.LastSuccess.IsZero() {
			gauge(descReloadTime, float64(st.LastSuccess.UnixNano())/1e9)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
