// Package admin is the tunnel's admin endpoint: Prometheus metrics, health
// and readiness probes, the running configuration and, when enabled, the Go
// profiler, on an HTTP listener of its own.
//
// It is off by default. `tunnel --admin 127.0.0.1:9901` turns it on in the
// plain mode; in tunnel.hcl, a top-level block does:
//
//	admin {
//	  listen = "127.0.0.1:9901" # the default; loopback only
//	  pprof  = false            # true: also serve /debug/pprof/
//	}
//
// # Endpoints
//
//	GET /metrics        Prometheus text format (see below)
//	GET /healthz        200 "ok": the process is alive and serving HTTP
//	GET /readyz         200 "ready", or 503 with the reason: before the first
//	                    configuration runs, from the moment a stop begins
//	                    (SIGINT/SIGTERM), so a load balancer stops sending
//	                    new connections before the listeners close, and
//	                    while a running route's listener is down (its
//	                    accept loop failed; a reload that cannot bind a
//	                    new address is refused whole and changes nothing)
//	GET /config         the running routes as JSON: name, listen address,
//	                    bound address, target, the chain's links by name
//	GET /connections    the open connections as JSON, oldest first: id,
//	                    route, client, target, start, age, bytes each way;
//	                    paged with ?limit= (default 100, at most 1000) and
//	                    ?offset=
//	POST /drain         /readyz answers 503 from now on, so load balancers
//	                    stop sending new connections; the routes keep
//	                    accepting until SIGTERM (202)
//	GET /debug/pprof/   net/http/pprof, only when enabled
//	GET /               this list
//
// Other methods get 405, other paths 404.
//
// # Metrics
//
// Every connection metric is labelled by route name (route) and, for bytes,
// by the peer the bytes were read from or written to (peer = "client" or
// "server"); plugin metrics by plugin name. Reasons, callbacks and results
// are fixed sets. No label names a connection or a client address, so the
// number of series is bounded by the routes and plugins ever configured.
//
//	tunnel_connections_total{route}                connections accepted (Envoy's downstream_cx_total)
//	tunnel_connections_active{route}               connections open now (downstream_cx_active)
//	tunnel_connection_errors_total{route}          connections that ended with an error: reset, failed dial, idle timeout, a filter's error, a TLS or no-route refusal, a shutdown's abort
//	tunnel_upstream_connect_failures_total{route}  dials of the target that failed (upstream_cx_connect_fail); also counted in errors
//	tunnel_idle_timeouts_total{route}              connections closed by idle_timeout (upstream_cx_idle_timeout); also counted in errors
//	tunnel_bytes_received_total{route,peer}        bytes read from the client or the server
//	tunnel_bytes_sent_total{route,peer}            bytes written to the client or the server
//	tunnel_connections_closed_total{route,reason}  finished connections by the access log's reason=
//	tunnel_connections_rejected_total{route,reason}  turned away: limit, denied (a filter refused it at open; HAProxy's denied_connections), tls, no_route;
//	                                               limit stays 0: past max_connections clients wait in the backlog (tunnel_listener_at_limit)
//	tunnel_connection_duration_seconds{route}      histogram of connection lifetimes (downstream_cx_length_ms)
//	tunnel_upstream_connect_duration_seconds{route}  histogram of successful dials (upstream_cx_connect_ms)
//	tunnel_listener_up{route}                      1, or 0 once the route's accept loop failed
//	tunnel_listener_at_limit{route}                1 while max_connections are open
//	tunnel_plugin_calls_total{plugin,callback,result}  calls into plugins: callback open/data/close/timer, result ok/rejected/timeout/violation/error
//	tunnel_plugin_call_duration_seconds{plugin,callback}  histogram of one call in 16
//	tunnel_plugin_instances{plugin}                live instances
//	tunnel_plugin_<plugin>_<name>{route,...}       what a plugin defines itself (ABI v2 metric_define; pluginmetrics.go)
//	tunnel_config_reloads_total{result}            reloads: success, failure
//	tunnel_config_last_reload_successful           1 or 0
//	tunnel_config_last_reload_success_timestamp_seconds  the last good load, the first one included
//	tunnel_build_info{version,revision,goversion}  1
//
// The plugin and reload metrics are served when the Source runs plugins
// (PluginSource) or reloads a file (ReloadSource). The histograms are
// counted with atomic adds into fixed buckets (package internal/histo):
// nothing locks or allocates per connection or per call.
//
// plus the standard go_* and process_* collectors. The byte counts include
// what open connections have moved so far, so a long transfer shows as a
// steady rate rather than one jump when it ends. received{peer="client"}
// and sent{peer="server"} differ when a filter drops, rewrites or answers.
//
// The values are read from the Source at scrape time (host.Proxy.Stats):
// forwarding pays nothing for the endpoint between scrapes.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tunnelwasm/tunnel/host"
)

// Source is what the endpoint reports on. A [host.Proxy] provides Stats;
// the caller adds readiness and the configuration summary. Its methods are
// called from the HTTP server's goroutines, concurrently.
type Source interface {
	// Stats returns every route's counters (host.Proxy.Stats).
	Stats() []host.RouteStats
	// Connections returns the open connections, oldest first
	// (host.Proxy.Connections).
	Connections() []host.ConnStats
	// Drain makes Ready fail from now on (POST /drain); the routes keep
	// accepting until the process is told to stop.
	Drain()
	// Ready returns nil when the tunnel should receive new connections,
	// otherwise why not (shown in /readyz's 503 body).
	Ready() error
	// Config returns the running configuration, marshalled as JSON for
	// /config.
	Config() any
}

// Options adjust the handler.
type Options struct {
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// Version is tunnel_build_info's version label; empty means the main
	// module's version from the binary's build information.
	Version string
	// Logger gets a line for each POST /drain (nil: slog.Default()).
	Logger *slog.Logger
}

// NewHandler returns the admin endpoint's handler. It uses a registry of its
// own, so two handlers in one process (tests) do not collide.
func NewHandler(src Source, opts Options) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		&collector{src: src},
		&guestCollector{src: src}, // pluginmetrics.go
		buildInfo(opts.Version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := src.Ready(); err != nil {
			text(w, http.StatusServiceUnavailable, fmt.Sprintf("not ready: %v\n", err))
			return
		}
		if err := listenersDown(src); err != nil {
			text(w, http.StatusServiceUnavailable, fmt.Sprintf("not ready: %v\n", err))
			return
		}
		text(w, http.StatusOK, "ready\n")
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		b, err := json.MarshalIndent(src.Config(), "", "  ")
		if err != nil {
			text(w, http.StatusInternalServerError, fmt.Sprintf("encoding the configuration: %v\n", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
	mux.HandleFunc("GET /connections", func(w http.ResponseWriter, r *http.Request) {
		serveConnections(w, r, src.Connections())
	})
	mux.HandleFunc("POST /drain", func(w http.ResponseWriter, r *http.Request) {
		src.Drain()
		logger := opts.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Info("draining: /readyz answers 503 from now on; the routes keep accepting until SIGTERM", "from", r.RemoteAddr)
		text(w, http.StatusAccepted, "draining: /readyz answers 503 from now on; the routes keep accepting until SIGTERM\n")
	})
	index := "/metrics\n/healthz\n/readyz\n/config\n/connections\n"
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		index += "/debug/pprof/\n"
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, index)
	})
	return mux
}

// listenersDown returns an error naming every route whose listener is
// down, when src reports its listeners; nil otherwise.
func listenersDown(src Source) error {
	ls, ok := src.(ListenerSource)
	if !ok {
		return nil
	}
	var down []string
	for _, l := range ls.Listeners() {
		if !l.Up {
			down = append(down, fmt.Sprintf("route %q: listener on %s is down: %v", l.Route, l.Addr, l.Err))
		}
	}
	if down == nil {
		return nil
	}
	return errors.New(strings.Join(down, "; "))
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// buildInfo is tunnel_build_info, a constant 1 labelled with the version.
func buildInfo(version string) prometheus.Collector {
	revision, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if version == "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "unknown"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "tunnel_build_info",
		Help:        "A constant 1, labelled with the tunnel's version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	}, func() float64 { return 1 })
}

// Paging of /connections.
const (
	defaultConnLimit = 100
	maxConnLimit     = 1000
)

// connectionsPage is /connections' body.
type connectionsPage struct {
	Total       int          `json:"total"`
	Offset      int          `json:"offset"`
	Connections []connection `json:"connections"`
}

type connection struct {
	ID              uint64    `json:"id"`
	Route           string    `json:"route"`
	Client          string    `json:"client"`
	Target          string    `json:"target"`
	Start           time.Time `json:"start"`
	AgeSeconds      float64   `json:"age_seconds"`
	BytesFromClient int64     `json:"bytes_from_client"`
	BytesToServer   int64     `json:"bytes_to_server"`
	BytesFromServer int64     `json:"bytes_from_server"`
	BytesToClient   int64     `json:"bytes_to_client"`
}

// serveConnections writes one page of cs as JSON; a bad limit or offset is
// a 400 that names it.
func serveConnections(w http.ResponseWriter, r *http.Request, cs []host.ConnStats) {
	limit, offset := defaultConnLimit, 0
	for _, p := range []struct {
		name string
		v    *int
		max  int
	}{{"limit", &limit, maxConnLimit}, {"offset", &offset, math.MaxInt}} {
		if s := r.URL.Query().Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > p.max {
				text(w, http.StatusBadRequest, fmt.Sprintf("%s=%q: want a whole number from 0 to %d\n", p.name, s, p.max))
				return
			}
			*p.v = n
		}
	}
	page := connectionsPage{Total: len(cs), Offset: offset, Connections: []connection{}}
	now := time.Now()
	for _, c := range cs[min(offset, len(cs)):min(offset+limit, len(cs))] {
		page.Connections = append(page.Connections, connection{ID: c.ID, Route: c.Route, Client: c.Client, Target: c.Target,
			Start: c.Start, AgeSeconds: now.Sub(c.Start).Seconds(),
			BytesFromClient: c.BytesFromClient, BytesToServer: c.BytesToServer, BytesFromServer: c.BytesFromServer, BytesToClient: c.BytesToClient})
	}
	b, err := json.MarshalIndent(page, "", "  ")
	if err != nil {
		text(w, http.StatusInternalServerError, fmt.Sprintf("encoding the connections: %v\n", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}
