package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/config"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// loadPlainPlugins compiles the --plugin files (or built-in plugins,
// builtin:NAME) into chain links, attached to
// both directions in the order given. release closes the plugins: it is the
// route's OnRelease (nil without plugins). The returned cleanup releases
// the runtime once the proxy is shut down.
func loadPlainPlugins(ctx context.Context, o *options, stdout, stderr io.Writer, logger *slog.Logger) (links []host.Link, release func(), cleanup func(), err error) {
	if len(o.plugins) == 0 {
		return nil, nil, func() {}, nil
	}
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: o.cacheDir, Logger: logger})
	if err != nil {
		return nil, nil, nil, err // "plugin runtime: ..."
	}
	cleanup = func() { rt.Close(context.Background()) }
	var plugins []*plugin.Plugin
	for _, pp := range o.plugins {
		name := strings.TrimSuffix(filepath.Base(pp.path), filepath.Ext(pp.path))
		opts := plugin.Options{
			Name:     name,
			Route:    "default", // runPlain's route
			Config:   []byte(pp.config),
			Trusted:  o.trusted,
			FailOpen: o.failOpen,
			Stdout:   stdout,
			Logger:   logger,
		}
		var p *plugin.Plugin
		if b, ok := strings.CutPrefix(pp.path, builtin.Prefix); ok {
			opts.Name = b
			p, err = loadBuiltin(ctx, rt, b, opts)
		} else {
			// A regular file of bounded size (a named pipe hung the
			// start, /dev/zero ate the memory): Load checks.
			p, err = rt.Load(ctx, pp.path, opts)
		}
		if err != nil {
			cleanup()
			if errors.Is(err, fs.ErrNotExist) {
				hint := config.BuildHint(pp.path)
				if hint == "" {
					hint = "For a built-in plugin give --plugin builtin:NAME (tunnel plugins lists them)."
				}
				return nil, nil, nil, fmt.Errorf("--plugin %s: %w. %s", pp.path, err, hint)
			}
			return nil, nil, nil, fmt.Errorf("--plugin %s: %w", pp.path, err)
		}
		plugins = append(plugins, p)
		links = append(links, host.Link{Name: opts.Name, Hook: p})
	}
	release = func() {
		for _, p := range plugins {
			p.Close()
		}
	}
	return links, release, cleanup, nil
}

// loadBuiltin makes a plugin of the built-in plugin name.
func loadBuiltin(ctx context.Context, rt *plugin.Runtime, name string, opts plugin.Options) (*plugin.Plugin, error) {
	wasm, err := builtin.Wasm(name)
	if err != nil {
		return nil, err
	}
	m, err := rt.Compile(ctx, name, wasm)
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx) // the plugin keeps the code alive
	return m.NewPlugin(ctx, opts)
}

// runPlugins implements `tunnel plugins`: it lists the built-in plugins.
func runPlugins(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		args = nil // as every other subcommand takes it
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "tunnel plugins: unexpected argument %q\n", args[0])
		return 2
	}
	writeBuiltins(stdout)
	return 0
}

// writeBuiltins prints the built-in plugins, one a line, and how to use them.
func writeBuiltins(w io.Writer) {
	fmt.Fprintln(w, "Built-in plugins (in tunnel.hcl: plugin \"NAME\" { builtin = \"NAME\" }; on the command line: --plugin builtin:NAME):")
	width := 0
	for _, n := range builtin.Names() {
		width = max(width, len(n))
	}
	for _, n := range builtin.Names() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, builtin.Description(n))
	}
}
