package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/tunnelwasm/tunnel/host"
)

// loadPlainPlugins compiles the --plugin files into chain links.
func loadPlainPlugins(ctx context.Context, o *options, stdout, stderr io.Writer, logger *slog.Logger) ([]host.Link, func(), error) {
	if len(o.plugins) == 0 {
		return nil, func() {}, nil
	}
	return nil, nil, errors.New("--plugin: the WASM runtime is not wired in yet")
}
