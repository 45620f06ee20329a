package main

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/addr"
	"github.com/tunnelwasm/tunnel/internal/admin"
	"github.com/tunnelwasm/tunnel/internal/config"
)

// startAdmin serves the admin endpoint (package internal/admin) for src on
// listen, with pprof when asked; an empty listen serves nothing. A
// non-loopback address is served, with a warning: it was written out
// (addr.Exposed refuses one with no host). The returned stop never fails.
func startAdmin(listen string, pprof bool, src admin.Source, logger *slog.Logger) (stop func(), err error) {
	if listen == "" {
		return func() {}, nil
	}
	exposed, err := addr.Exposed(listen)
	if err != nil {
		return nil, err
	}
	s, err := admin.Listen(listen, admin.NewHandler(src, admin.Options{Pprof: pprof}), logger)
	if err != nil {
		return nil, err
	}
	logger.Info("admin endpoint listening", "addr", s.Addr().String(), "pprof", pprof)
	if exposed {
		logger.Warn("THE ADMIN ENDPOINT IS REACHABLE FROM OTHER MACHINES: anyone who can connect reads the routes, their targets and the metrics; listen on 127.0.0.1 unless a firewall keeps others out", "addr", s.Addr().String())
	}
	return func() { s.Close() }, nil
}

// drain is the first step of a stop: src reports not ready at once, then
// the listeners stay open for delay so that load balancers probing /readyz
// stop sending new connections before they close. A second signal (again)
// cuts the delay short.
func drain(markDraining func(), delay time.Duration, again <-chan struct{}, logger *slog.Logger) {
	markDraining()
	if delay <= 0 {
		return
	}
	logger.Info("draining: not ready, still accepting", "drain_delay", delay.String())
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-again:
		logger.Warn("second signal: ending the drain delay now")
	}
}

// plainSource is what the admin endpoint reports in the plain mode.
type plainSource struct {
	p     *host.Proxy
	route host.Route
	state atomic.Int32 // 0 starting, 1 ready, 2 draining
}

func (s *plainSource) Stats() []host.RouteStats { return s.p.Stats() }

func (s *plainSource) Connections() []host.ConnStats { return s.p.Connections() }

// Drain makes /readyz answer 503 from now on (POST /drain, or a signal).
func (s *plainSource) Drain() { s.state.Store(2) }

func (s *plainSource) Config() any {
	return map[string]any{"routes": config.Summarize([]host.Route{s.route}, s.p.Addr)}
}

func (s *plainSource) Ready() error {
	switch s.state.Load() {
	case 1:
		return nil
	case 2:
		return errors.New("shutting down")
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
	f, diags := config.Parse(path, config.Options{})
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
