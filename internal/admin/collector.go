package admin

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The descriptions of the tunnel's own metrics; see the package comment.
var (
	descConnections = prometheus.NewDesc("tunnel_connections_total",
		"Connections accepted.", []string{"route"}, nil)
	descActive = prometheus.NewDesc("tunnel_connections_active",
		"Connections open now.", []string{"route"}, nil)
	descErrors = prometheus.NewDesc("tunnel_connection_errors_total",
		"Connections that ended with an error (reset, failed dial, idle timeout, filter error, shutdown abort).", []string{"route"}, nil)
	descDialFailures = prometheus.NewDesc("tunnel_upstream_connect_failures_total",
		"Dials of the target that failed.", []string{"route"}, nil)
	descIdle = prometheus.NewDesc("tunnel_idle_timeouts_total",
		"Connections closed by the route's idle timeout.", []string{"route"}, nil)
	descReceived = prometheus.NewDesc("tunnel_bytes_received_total",
		"Bytes read from a peer (client or server), open connections included.", []string{"route", "peer"}, nil)
	descSent = prometheus.NewDesc("tunnel_bytes_sent_total",
		"Bytes written to a peer (client or server), open connections included.", []string{"route", "peer"}, nil)
)

// collector turns Source.Stats into metrics at each scrape.
type collector struct{ src Source }

// Describe sends the descriptions of every metric Collect may send.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descActive, descErrors, descDialFailures, descIdle, descReceived, descSent} {
		ch <- d
	}
}

// Collect reads the Source's counters once and sends them.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, s := range c.src.Stats() {
		r := s.Route
		counter(descConnections, s.Accepted, r)
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(s.Active), r)
		counter(descErrors, s.Errors, r)
		counter(descDialFailures, s.DialFailures, r)
		counter(descIdle, s.IdleTimeouts, r)
		counter(descReceived, s.BytesFromClient, r, "client")
		counter(descReceived, s.BytesFromServer, r, "server")
		counter(descSent, s.BytesToClient, r, "client")
		counter(descSent, s.BytesToServer, r, "server")
	}
}
