package main

import (
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/addr"
	"github.com/tunnelwasm/tunnel/internal/admin"
	"github.com/tunnelwasm/tunnel/internal/config"
)

// startAdmin serves the admin endpoint (package internal/admin) for src on
// listen, with pprof when asked; an empty listen serves nothing. A
// non-loopback address is served, with a warning: it was written out
// (addr.Exposed refuses one with no host). The returned stop, called when
// the run is over, logs the final counts ("stopped") and never fails.
func startAdmin(listen string, pprof bool, src admin.Source, logger *slog.Logger) (stop func(), err error) {
	// The last step of a stop: the counts once the connections are done
	// (not after a failed start, whose error is the last line).
	stopped := func() {
		if d, ok := src.(interface{ Draining() bool }); ok && d.Draining() {
			logger.Info("stopped", counts(src.Stats())...)
		}
	}
	if listen == "" {
		return stopped, nil
	}
	exposed, err := addr.Exposed(listen)
	if err != nil {
		return nil, err
	}
	s, err := admin.Listen(listen, admin.NewHandler(src, admin.Options{Pprof: pprof, Logger: logger}), logger)
	if err != nil {
		return nil, err
	}
	logger.Info("admin endpoint listening", "addr", s.Addr().String(), "pprof", pprof)
	if exposed {
		logger.Warn("THE ADMIN ENDPOINT IS REACHABLE FROM OTHER MACHINES: anyone who can connect reads the routes, their targets and the metrics; listen on 127.0.0.1 unless a firewall keeps others out", "addr", s.Addr().String())
	}
	return func() { stopped(); s.Close() }, nil
}

// drainSource is what a stop drains: the admin endpoint's Source of either
// mode.
type drainSource interface {
	Drain()
	Stats() []host.RouteStats
}

// drain is the first step of a stop: src reports not ready at once, then
// the listeners stay open for delay so that load balancers probing /readyz
// stop sending new connections before they close. A second signal (again)
// cuts the delay short. Both steps are logged with the connection counts.
func drain(src drainSource, delay time.Duration, again <-chan struct{}, logger *slog.Logger) {
	src.Drain()
	if delay <= 0 {
		logger.Info("draining: not ready", append([]any{"drain_delay", "0s"}, counts(src.Stats())...)...)
		return
	}
	logger.Info("draining: not ready, still accepting", append([]any{"drain_delay", delay.String()}, counts(src.Stats())...)...)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-again:
		// The same signal cuts the grace period short (shutdown sees it too).
		logger.Warn("second signal: ending the drain delay now, and the grace period after it")
	}
	logger.Info("drain delay over: closing the listeners", counts(src.Stats())...)
}

// counts are log attributes summing stats over the routes: connections
// accepted so far and open now.
func counts(stats []host.RouteStats) []any {
	var accepted, open, errs int64
	for _, s := range stats {
		accepted, open, errs = accepted+s.Accepted, open+s.Active, errs+s.Errors
	}
	return []any{"accepted", accepted, "open", open, "errors", errs}
}

// plainSource is what the admin endpoint reports in the plain mode.
type plainSource struct {
	p     *host.Proxy
	route host.Route
	state atomic.Int32 // 0 starting, 1 ready, 2 draining
}

func (s *plainSource) Stats() []host.RouteStats { return s.p.Stats() }

// Listeners reports the route's listener (admin.ListenerSource).
func (s *plainSource) Listeners() []host.ListenerState { return s.p.Listeners() }

// PluginMetrics reports the --plugin plugins (admin.PluginSource).
func (s *plainSource) PluginMetrics() []plugin.Metrics {
	var out []plugin.Metrics
	for _, l := range s.route.Chain {
		if p, ok := l.Hook.(*plugin.Plugin); ok {
			out = append(out, p.Metrics())
		}
	}
	return out
}

// GuestMetrics reports the metrics the --plugin plugins define
// (admin.GuestMetricsSource).
func (s *plainSource) GuestMetrics() []plugin.GuestMetric {
	var ps []*plugin.Plugin
	for _, l := range s.route.Chain {
		if p, ok := l.Hook.(*plugin.Plugin); ok {
			ps = append(ps, p)
		}
	}
	return plugin.CollectGuestMetrics(ps...)
}

func (s *plainSource) Connections() []host.ConnStats { return s.p.Connections() }

// Drain makes /readyz answer 503 from now on (POST /drain, or a signal).
func (s *plainSource) Drain() { s.state.Store(2) }

// Draining reports whether Drain was called.
func (s *plainSource) Draining() bool { return s.state.Load() == 2 }

func (s *plainSource) Config() any {
	return map[string]any{"routes": config.Summarize([]host.Route{s.route}, s.p.Addr)}
}

func (s *plainSource) Ready() error {
	switch s.state.Load() {
	case 1:
		return nil
	case 2:
		return errors.New("draining: POST /drain or a shutdown asked new connections to go elsewhere")
	}
	return errors.New("not listening yet")
}

// adminSettings are the admin endpoint's settings in the config mode: the
// file's admin block, read before the Runner starts so that /healthz and
// /readyz answer while the plugins compile; --admin and --drain-delay
// override it. A file with errors yields the flags' settings (Start then
// reports the errors).
func adminSettings(path string, o *options) (listen string, pprof bool, delay time.Duration) {
	listen, delay = o.admin, o.drainDelay
	f, diags := config.Parse(path, config.Options{FetchDir: fetchDir(o.cacheDir)})
	if diags.HasErrors() || f.Admin == nil {
		return listen, false, delay
	}
	if listen == "" {
		listen = f.Admin.Listen
	}
	if delay == 0 {
		delay = f.Admin.DrainDelay
	}
	return listen, f.Admin.Pprof, delay
}

// configSource is what the admin endpoint reports in the config mode: the
// Runner (its readiness included: a failed reload, even one that could not
// bind a route's address, keeps the running configuration and leaves it
// as it was), plus the counts of its reloads (admin.ReloadSource).
type configSource struct {
	*config.Runner

	mu      sync.Mutex
	reloads admin.ReloadStats
	drained atomic.Bool
}

// Drain is the Runner's, remembered for Draining.
func (s *configSource) Drain() {
	s.drained.Store(true)
	s.Runner.Drain()
}

// Draining reports whether Drain was called.
func (s *configSource) Draining() bool { return s.drained.Load() }

// started records the first load's success.
func (s *configSource) started() {
	s.mu.Lock()
	s.reloads.LastSuccess = time.Now()
	s.mu.Unlock()
}

// reloaded is the Runner's OnReload.
func (s *configSource) reloaded(r config.Reload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloads.LastFailed = r.Err != nil
	if r.Err != nil {
		s.reloads.Failed++
		return
	}
	s.reloads.Succeeded++
	s.reloads.LastSuccess = time.Now()
}

// Reloads returns the reload counts (admin.ReloadSource).
func (s *configSource) Reloads() admin.ReloadStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloads
}

// fetchDir is where plugins by URL are kept: next to the compilation cache
// (cacheDir), or, without one, in the system's temporary directory.
func fetchDir(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Join(cacheDir, "fetched")
}
