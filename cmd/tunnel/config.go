package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/config"
)

// runConfig runs the tunnel from an HCL file until ctx is done (SIGINT/SIGTERM), reloading on SIGHUP and on
// changes of the file or any .wasm it references. o gives the --grace and --cache-dir flags. Returns the
// process exit code.
func runConfig(ctx context.Context, path string, o *options, stdout, stderr io.Writer, logger *slog.Logger) int {
	r := &config.Runner{
		Path:      path,
		Stdout:    stdout,
		Logger:    logger,
		AccessLog: o.accessLog,
		Runtime:   plugin.RuntimeOptions{CacheDir: o.cacheDir, Logger: logger},
		Options:   config.Options{FetchDir: fetchDir(o.cacheDir)},
		// From here a stop signal drains what the first Apply opens.
		BeforeServe: o.serving,
	}
	hup := o.hup
	if hup == nil {
		hup = notifyHUP()
		defer signal.Stop(hup)
	}
	src := &configSource{Runner: r}
	r.OnReload = src.reloaded
	listen, pprof, delay := adminSettings(path, o)
	stopAdmin, err := startAdmin(listen, pprof, src, logger)
	if err != nil {
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 1
	}
	defer stopAdmin()
	if err := r.Start(ctx); err != nil {
		var le *config.LoadError
		if errors.As(err, &le) {
			config.WriteDiagnostics(stderr, le.Diags, le.Files)
			fmt.Fprintf(stderr, "tunnel: %s has errors; nothing was started\n", path)
		} else {
			fmt.Fprintf(stderr, "tunnel: %v\n", err)
		}
		return 1
	}
	src.started()
	code := 0
	if err := r.Run(ctx, hup); err != nil {
		logger.Error("stopped serving the configuration", "err", err)
		code = 1
	}
	// As in the plain mode: open connections get a grace period, which a
	// second SIGINT/SIGTERM cuts short, and the wait is bounded whatever the
	// engine does.
	drain(src, delay, o.again, logger)
	shutdown("configuration shutdown", r.Shutdown, o.grace, o.again, logger)
	return code
}

// runValidate implements `tunnel validate [FILE]` (default ./tunnel.hcl): prints every diagnostic, exit 1 on errors, 0 if valid.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tunnel validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tunnel validate [-v] [FILE]   check an HCL configuration (default ./tunnel.hcl); exit 1 on errors; -v: show each plugin's limits")
		writeBuiltins(stderr)
	}
	verbose := new(bool)
	boolVar(fs, verbose, "v", false, "show each plugin's limits and the plugins' memory against plugin_memory_limit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	path := "tunnel.hcl"
	if fs.NArg() >= 1 {
		path = fs.Arg(0)
		// Flags after the file too: tunnel validate tunnel.hcl -v.
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "tunnel validate: one file at most, got %s and %q\n", path, fs.Args())
			fs.Usage()
			return 2
		}
	}
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, diags := config.Parse(path, config.Options{FetchDir: fetchDir(defaultCacheDir())})
	b := &config.Builder{Logger: logger, Validate: true}
	if len(f.Plugins) > 0 {
		rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: defaultCacheDir(), Logger: logger})
		if err != nil {
			fmt.Fprintf(stderr, "tunnel validate: starting the WebAssembly runtime: %v\n", err)
			return 1
		}
		defer rt.Close(ctx)
		b.Runtime = rt
	}
	set, bdiags := b.Build(ctx, f, diags)
	set.Close()
	b.Close(ctx)
	diags = append(diags, bdiags...)
	config.WriteDiagnostics(stderr, diags, f.Files)
	errs, warns := 0, 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	if errs > 0 {
		fmt.Fprintf(stderr, "%s: %d error(s), %d warning(s)\n", path, errs, warns)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (%d route(s), %d plugin(s), %d warning(s))\n", path, len(f.Routes), len(f.Plugins), warns)
	if *verbose {
		for _, s := range f.Settings() {
			fmt.Fprintln(stdout, "  "+s)
		}
	}
	return 0
}
