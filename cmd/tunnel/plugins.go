package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// loadPlainPlugins compiles the --plugin files into chain links, attached to
// both directions in the order given. release closes the plugins: it is the
// route's OnRelease (nil without plugins). The returned cleanup releases
// the runtime once the proxy is shut down.
func loadPlainPlugins(ctx context.Context, o *options, stdout, stderr io.Writer, logger *slog.Logger) (links []host.Link, release func(), cleanup func(), err error) {
	if len(o.plugins) == 0 {
		return nil, nil, func() {}, nil
	}
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: o.cacheDir, Logger: logger})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("plugin runtime: %w", err)
	}
	cleanup = func() { rt.Close(context.Background()) }
	var plugins []*plugin.Plugin
	for _, pp := range o.plugins {
		name := strings.TrimSuffix(filepath.Base(pp.path), filepath.Ext(pp.path))
		p, err := rt.Load(ctx, pp.path, plugin.Options{
			Name:     name,
			Config:   []byte(pp.config),
			Trusted:  o.trusted,
			FailOpen: o.failOpen,
			Stdout:   stdout,
			Logger:   logger,
		})
		if err != nil {
			cleanup()
			return nil, nil, nil, fmt.Errorf("--plugin %s: %w", pp.path, err)
		}
		plugins = append(plugins, p)
		links = append(links, host.Link{Name: name, Hook: p})
	}
	release = func() {
		for _, p := range plugins {
			p.Close()
		}
	}
	return links, release, cleanup, nil
}
