package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/regfile"
)

// maxWasmFile bounds the size of a plugin file read from disk.
const maxWasmFile = plugin.MaxModuleFile

// Builder turns a [File] into routes for a [host.Proxy]: it compiles each
// plugin's .wasm (once per content: unchanged files are not compiled again
// on reload) and instantiates one [plugin.Plugin] per chain link.
//
// A Builder is safe for use by one goroutine at a time. Close releases the
// compiled modules it keeps.
type Builder struct {
	// Runtime compiles and runs the plugins. Required when the file has
	// plugins.
	Runtime *plugin.Runtime
	// Stdout receives the dumps of routes with a dump block and the output
	// of plugins granted stdout. Nil discards both.
	Stdout io.Writer
	// Logger is handed to the plugins (their log calls) and reports
	// problems releasing modules. Nil means slog.Default().
	Logger *slog.Logger
	// Validate builds to check only (tunnel validate): files the routes
	// would write (key logs) are checked, not created.
	Validate bool

	mu      sync.Mutex
	modules map[string]*cachedModule // by absolute path
	tls     tlsCache                 // TLS configs and key logs (tls_build.go)
}

type cachedModule struct {
	sum [sha256.Size]byte
	mod *plugin.Module
}

// Set is the product of one Build: routes ready for [host.Proxy.Apply].
// Every route owns the plugins made for its chain: once Apply has accepted
// the routes, each route's OnRelease closes them when the Proxy is done
// with that version of the route (a later Apply replaced it, or the Proxy
// shut down, and its last connection ended). If the routes are never
// applied (validation only, or Apply failed), call Close.
type Set struct {
	Routes  []host.Route
	plugins []*plugin.Plugin
	capture []*capture.Writer
}

// Close releases the plugins of a Set that was not applied. It is safe to
// call on a nil Set.
func (s *Set) Close() {
	if s == nil {
		return
	}
	for _, p := range s.plugins {
		p.Close()
	}
	s.plugins = nil
	for _, w := range s.capture {
		w.Close()
	}
	s.capture = nil
}

func (b *Builder) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.Default()
}

func (b *Builder) stdout() io.Writer {
	if b.Stdout != nil {
		return b.Stdout
	}
	return io.Discard
}

// Build compiles the file's plugins and instantiates the chains. It works on
// a File with errors too, skipping what could not be decoded, so that every
// problem is reported in one go; but the Set is only returned (non-nil) when
// there are no errors at all (in diags from Parse, passed in as prior, nor
// found here).
//
// Problems are reported where the user fixes them: a missing or invalid
// .wasm at the plugin's path attribute, a plugin that rejects its config at
// the chain's config attribute.
func (b *Builder) Build(ctx context.Context, f *File, prior hcl.Diagnostics) (*Set, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	mods := map[string]*plugin.Module{} // by plugin name
	for _, p := range f.Plugins {
		if !p.hasModule() || mods[p.Name] != nil {
			continue
		}
		mod, d := b.compile(ctx, p)
		diags = append(diags, d...)
		if mod != nil {
			mods[p.Name] = mod
		}
	}
	set := &Set{}
	for _, r := range f.Routes {
		hr := host.Route{
			Name:        r.Name,
			Listen:      r.Listen,
			Target:      r.Target,
			DialTimeout: r.DialTimeout,
			IdleTimeout: r.IdleTimeout,
			MaxConns:    r.MaxConns,
			ReusePort:   r.ReusePort,
			LateDial:    r.LateDial,
		}
		diags = append(diags, b.routeTLS(r, &hr)...)
		// As in the plain mode: the PROXY header first, then the dump, then
		// the plugins.
		if r.ProxyProtocol {
			hook := host.ProxyProtocol()
			if r.ProxyProtocolVersion == 2 {
				hook = host.ProxyProtocolV2()
			}
			hr.Chain = append(hr.Chain, host.Link{Name: "proxy-protocol", Hook: hook, Directions: host.OnlyClientToServer})
		}
		if r.Dump != nil {
			format := host.DumpText
			if r.Dump.Format == "hex" {
				format = host.DumpHex
			}
			hr.Chain = append(hr.Chain, host.Link{Name: "dump", Hook: host.Dump(b.stdout(), format)})
		}
		var owned []*plugin.Plugin // made for this route only
		for _, l := range r.Chain {
			p := f.Plugin(l.Plugin)
			mod := mods[l.Plugin]
			if p == nil || mod == nil {
				continue
			}
			opts := plugin.Options{
				Name:        p.Name,
				Route:       r.Name, // the identity of its shared state, its metrics' route label
				Config:      l.Config,
				MemoryLimit: p.MemoryLimit,
				CallTimeout: p.CallTimeout,
				MaxOutput:   p.MaxOutput,
				// The shared state's bounds (ABI v2).
				StateMaxValue: p.StateMaxValue,
				StateMaxTotal: p.StateMaxTotal,
				Trusted:       p.Trusted,
				FailOpen:      p.FailOpen,
				Instances:     p.Instances,
				Logger:        b.logger().With("route", r.Name),
				// Containment.
				TripFailures:   p.TripFailures,
				TripWindow:     p.TripWindow,
				TripMaxBackoff: p.TripMaxBackoff,
				LogRate:        float64(p.LogRate),
				LogBurst:       p.LogBurst,
			}
			if p.Stdout {
				opts.Stdout = b.stdout()
			}
			plug, err := mod.NewPlugin(ctx, opts)
			if err != nil {
				diags = append(diags, hookDiag(p, r, l, err))
				continue
			}
			set.plugins = append(set.plugins, plug)
			owned = append(owned, plug)
			hr.Chain = append(hr.Chain, host.Link{Name: p.Name, Hook: plug, Directions: l.Directions})
		}
		if len(owned) > 0 {
			hr.OnRelease = closePlugins(owned, b.logger())
		}
		if c := r.Capture; c != nil {
			// Around the whole chain: the client leg before the PROXY
			// header and the dump, the target leg after the plugins.
			w, err := capture.Create(capture.Options{Path: c.Path, MaxSize: c.MaxSize, MaxFiles: c.MaxFiles, Logger: b.logger().With("route", r.Name)})
			if err != nil {
				rng := c.PathRange
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot capture", Detail: err.Error() + ".", Subject: &rng})
			} else {
				set.capture = append(set.capture, w)
				first, last := capture.Links(w)
				hr.Chain = append(append([]host.Link{first}, hr.Chain...), last)
				captureTLS(r, &hr, w)
				release := hr.OnRelease
				hr.OnRelease = func() {
					if release != nil {
						release()
					}
					if err := w.Close(); err != nil {
						b.logger().Error("capture: closing", "route", r.Name, "err", err)
					}
				}
			}
		}
		set.Routes = append(set.Routes, hr)
	}
	if prior.HasErrors() || diags.HasErrors() {
		set.Close()
		return nil, diags
	}
	return set, diags
}

// closePlugins returns the OnRelease of a route version that owns plugins:
// it closes them, once its last connection has ended.
func closePlugins(plugins []*plugin.Plugin, logger *slog.Logger) func() {
	return func() {
		for _, p := range plugins {
			if err := p.Close(); err != nil {
				logger.Warn("closing plugin", "plugin", p.Name(), "err", err)
			}
		}
	}
}

func hookDiag(p *Plugin, r *Route, l *Link, err error) *hcl.Diagnostic {
	var ce *plugin.ConfigError
	if errors.As(err, &ce) {
		rng := l.ConfigRange
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plugin rejected its config",
			Detail:   fmt.Sprintf("Plugin %q (route %q) refused this config: %s", p.Name, r.Name, ce.Message),
			Subject:  &rng,
		}
	}
	rng := l.PluginRange
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Plugin failed to start",
		Detail:   fmt.Sprintf("Plugin %q could not be instantiated for route %q: %s", p.Name, r.Name, strings.TrimPrefix(err.Error(), fmt.Sprintf("plugin %q: ", p.Name))),
		Subject:  &rng,
	}
}

// compile returns the module for p's file, compiling it only when its
// content is new.
func (b *Builder) compile(ctx context.Context, p *Plugin) (*plugin.Module, hcl.Diagnostics) {
	diag := func(summary, format string, args ...any) hcl.Diagnostics {
		rng := p.PathRange
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: &rng}}
	}
	var wasm []byte
	var err error
	if p.Builtin != "" {
		var d hcl.Diagnostics
		if wasm, d = readBuiltin(p); d != nil {
			return nil, d
		}
	} else if wasm, err = readLimited(p.Path, maxWasmFile); err != nil {
		hint := ""
		if errors.Is(err, fs.ErrNotExist) {
			if h := BuildHint(p.Path); h != "" {
				hint = " " + h
			}
		}
		return nil, diag("Cannot read plugin file", "Plugin %q: %v.%s", p.Name, err, hint)
	}
	if b.Runtime == nil {
		return nil, diag("No plugin runtime", "Plugin %q cannot be loaded: the tunnel was started without a WebAssembly runtime.", p.Name)
	}
	sum := sha256.Sum256(wasm)
	b.mu.Lock()
	defer b.mu.Unlock()
	key := p.moduleKey()
	if c := b.modules[key]; c != nil && c.sum == sum {
		return c.mod, nil
	}
	mod, err := b.Runtime.Compile(ctx, p.Name, wasm)
	if err != nil {
		// The runtime prefixes its errors with the plugin's name, which the
		// diagnostic's position already gives.
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("plugin %q: ", p.Name))
		return nil, diag("Invalid plugin module", "%s: %s.", key, strings.TrimRight(msg, "."))
	}
	if b.modules == nil {
		b.modules = map[string]*cachedModule{}
	}
	if old := b.modules[key]; old != nil {
		b.closeModule(ctx, old.mod)
	}
	b.modules[key] = &cachedModule{sum: sum, mod: mod}
	return mod, nil
}

// Retain drops the compiled modules of every plugin file f does not use, so
// that their code is freed once the plugins built from them are closed.
// Call it after the routes built from f were applied.
func (b *Builder) Retain(ctx context.Context, f *File) {
	b.tls.retain(f, b.logger())
	keep := map[string]bool{}
	for _, p := range f.Plugins {
		keep[p.moduleKey()] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for path, c := range b.modules {
		if !keep[path] {
			b.closeModule(ctx, c.mod)
			delete(b.modules, path)
		}
	}
}

// Close releases every compiled module the Builder keeps. Plugins built from
// them keep working until they are closed themselves.
func (b *Builder) Close(ctx context.Context) {
	b.tls.close(b.logger())
	b.mu.Lock()
	defer b.mu.Unlock()
	for path, c := range b.modules {
		b.closeModule(ctx, c.mod)
		delete(b.modules, path)
	}
}

func (b *Builder) closeModule(ctx context.Context, m *plugin.Module) {
	if err := m.Close(ctx); err != nil {
		b.logger().Warn("releasing compiled plugin", "module", m, "err", err)
	}
}

// readLimited reads a whole regular file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	return regfile.ReadFile(path, limit, "a plugin")
}

// BuildHint returns how to build the missing plugin file path when Go
// sources lie next to it (a main.go in its folder), or "".
func BuildHint(path string) string {
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "main.go")); err != nil {
		return ""
	}
	pkg := filepath.Dir(path)
	if !filepath.IsAbs(pkg) && !strings.HasPrefix(pkg, ".") {
		pkg = "." + string(filepath.Separator) + pkg // a package path, not an import path
	}
	return fmt.Sprintf("Build it from the Go sources next to it: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o %s %s", path, pkg)
}
