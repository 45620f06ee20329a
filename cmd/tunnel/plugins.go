package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/tunnelwasm/tunnel/host"
)

// loadPlainPlugins compiles the --plugin files into chain links, attached to
// both directions in the order given. The returned cleanup releases the
// runtime once the proxy is shut down.
func loadPlainPlugins(ctx context.Context, o *options, stdout, stderr io.Writer, logger *slog.Logger) ([]host.Link, func(), error) {
	if len(o.plugins) == 0 {
		return nil, func() {}, nil
	}
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{CacheDir: o.cacheDir, Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("plugin runtime: %w", err)
	}
	cleanup := func() { rt.Close(context.Background()) }
	var links []host.Link
	for _, pp := range o.plugins {
		name := strings.TrimSuffix(filepath.Base(pp.path), filepath.Ext(pp.path))
		p, err := rt.Load(ctx, pp.path, host.PluginOptions{
			Name:     name,
			Config:   []byte(pp.config),
			Trusted:  o.trusted,
			FailOpen: o.failOpen,
			Stdout:   stdout,
			Logger:   logger,
		})
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("--plugin %s: %w", pp.path, err)
		}
		links = append(links, host.Link{Name: name, Hook: p})
	}
	return links, cleanup, nil
}
