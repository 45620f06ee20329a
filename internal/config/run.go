package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
	"github.com/tunnelwasm/tunnel/internal/regfile"
)

// DefaultDebounce is how long changes of a watched file must settle before
// a [Runner] reloads, unless Runner.Debounce says otherwise.
const DefaultDebounce = 150 * time.Millisecond

// maxDebounceDelay bounds how long after the first event a check waits,
// whatever keeps changing: at most this many debounce periods.
const maxDebounceDelay = 4

// LoadError is a configuration with errors: the diagnostics (warnings
// included) and the sources to print them with [WriteDiagnostics].
type LoadError struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// Error formats the diagnostics as WriteDiagnostics does.
func (e *LoadError) Error() string {
	return FormatDiagnostics(e.Diags, e.Files)
}

// Reload describes one reload attempt, for [Runner.OnReload].
type Reload struct {
	// Trigger is "SIGHUP", "file change" or "manual".
	Trigger string
	// Err is nil when the new configuration runs; otherwise the running
	// configuration was kept. A *LoadError when the file is invalid.
	Err error
	// Routes is the number of routes now served.
	Routes int
}

// Runner serves a configuration file with a [host.Proxy] and keeps serving
// the file's current content: on SIGHUP (see Run) and whenever the file or a
// .wasm it references changes, it loads the file again and applies it
// atomically. A file with errors never replaces a running configuration; the
// errors are logged.
//
// Call Start, then Run (which returns when its context ends), then Shutdown
// or Close.
type Runner struct {
	// Path is the configuration file.
	Path string
	// Options are passed to Parse.
	Options Options
	// Stdout receives route dumps and the output of plugins granted stdout.
	Stdout io.Writer
	// Logger receives the operational log. Nil means slog.Default().
	Logger *slog.Logger
	// AccessLog, when set, receives every connection's close record
	// (host.Proxy.AccessLog).
	AccessLog *slog.Logger
	// Runtime configures the WebAssembly runtime the Runner creates; a nil
	// Runtime.Logger means Logger.
	Runtime plugin.RuntimeOptions
	// Edit, when set, may change each parsed file before it is built (tests
	// use it to listen on free ports).
	Edit func(*File)
	// OnReload, when set, is called after every reload attempt (not the
	// initial load), from the goroutine that reloaded.
	OnReload func(Reload)
	// Debounce is how long file changes must settle before a reload; zero
	// means DefaultDebounce.
	Debounce time.Duration
	// BeforeServe, when set, is called once by Start, after every plugin
	// of the first load compiled and right before its routes are applied
	// (their listeners opened); not when the load fails before that.
	BeforeServe func()

	mu       sync.Mutex // serialises loads
	proxy    host.Proxy
	rt       *plugin.Runtime
	builder  Builder
	watcher  *fsnotify.Watcher
	dirs     map[string]bool // directories watched
	files    []string        // absolute paths whose content makes the fingerprint
	absPath  string          // Path, absolute
	lastSeen [sha256.Size]byte
	routes   int
	started  bool
	// The admin endpoint's view (admin.go).
	state   atomic.Int32 // stateStarting, stateReady, stateDraining
	admin   *Admin       // the admin block of the first load
	summary atomic.Pointer[Summary]
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Start loads the file and starts serving it. An invalid file returns a
// *LoadError and nothing listens.
func (r *Runner) Start(ctx context.Context) (err error) {
	if r.started {
		return errors.New("runner already started")
	}
	ropts := r.Runtime
	if ropts.Logger == nil {
		ropts.Logger = r.logger()
	}
	rt, err := plugin.NewRuntime(ctx, ropts)
	if err != nil {
		return fmt.Errorf("starting the WebAssembly runtime: %w", err)
	}
	r.rt = rt
	r.proxy.Logger = r.logger()
	r.proxy.AccessLog = r.AccessLog
	r.builder = Builder{Runtime: rt, Stdout: r.Stdout, Logger: r.logger()}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.release(ctx)
		return fmt.Errorf("watching the configuration for changes: %w", err)
	}
	r.watcher = w
	r.dirs = map[string]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(ctx); err != nil {
		r.release(ctx)
		return err
	}
	r.started = true
	return nil
}

// load parses, builds and applies the file; r.mu is held.
func (r *Runner) load(ctx context.Context) error {
	abs, err := filepath.Abs(r.Path)
	if err != nil {
		return fmt.Errorf("configuration path %s: %w", r.Path, err)
	}
	f, diags := Parse(r.Path, r.Options)
	r.watch(abs, f)
	// Fingerprint what this load reads: the source as parsed, the plugin
	// files before Build reads them (a change in between costs one more
	// reload, never a missed one).
	var src []byte
	hf := f.Files[r.Path] // nil when the file could not be read
	if hf != nil {
		src = hf.Bytes
	}
	r.lastSeen = fingerprint(src, hf != nil, r.files)
	if r.Edit != nil && !diags.HasErrors() {
		r.Edit(f)
	}
	if r.started && r.routes > 0 && len(f.Routes) == 0 && !diags.HasErrors() {
		// An empty file on reload is more often a save caught halfway (an
		// editor truncates, then writes) than a wish to stop serving. The
		// parser's warning of the same name becomes this error.
		diags = slices.DeleteFunc(diags, func(d *hcl.Diagnostic) bool { return d.Summary == "No routes" })
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No routes",
			Detail:   fmt.Sprintf("The file declares no route block; applied, it would stop all %d running routes. To stop serving, stop the tunnel.", r.routes),
			Subject:  &hcl.Range{Filename: r.Path, Start: hcl.InitialPos, End: hcl.InitialPos},
		})
		return &LoadError{Diags: diags, Files: f.Files}
	}
	if !diags.HasErrors() {
		// The plugins of the running configuration that have open
		// connections keep their instances until those end.
		if d := checkMemory(f, plugstats.HeldBy(r.rt, nil)); d != nil {
			diags = append(diags, d)
		}
	}
	set, bdiags := r.builder.Build(ctx, f, diags)
	diags = append(diags, bdiags...)
	if set != nil && r.started && refuseExpired(diags) {
		set.Close()
		set = nil
	}
	if set == nil {
		return &LoadError{Diags: diags, Files: f.Files}
	}
	for _, d := range diags { // warnings only
		r.logDiag(slog.LevelWarn, d)
	}
	if !r.started && r.BeforeServe != nil {
		r.BeforeServe()
	}
	if err := r.proxy.Apply(set.Routes); err != nil {
		set.Close()
		return applyError(f, err)
	}
	r.builder.Retain(ctx, f)
	r.routes = len(set.Routes)
	r.applied(f, set.Routes)
	return nil
}

// refuseExpired turns the warnings about expired certificates into errors,
// and reports whether there was one. At a start an expired certificate is
// a warning (clients decide, and a test bed may want one); on a reload it
// would replace one that works by one that clients refuse, most often a
// file copied by mistake, so the running configuration stays.
func refuseExpired(diags hcl.Diagnostics) bool {
	found := false
	for _, d := range diags {
		if _, ok := d.Extra.(expiredCert); ok && d.Severity == hcl.DiagWarning {
			d.Severity = hcl.DiagError
			d.Summary = "Expired certificate"
			d.Detail += " A reload keeps the running certificate rather than serve one that clients refuse; restart the tunnel to use it anyway."
			found = true
		}
	}
	return found
}

// applyError turns a failure of Proxy.Apply into a diagnostic at the listen
// address of the route that could not bind (typically: port in use), or a
// plain error.
func applyError(f *File, err error) error {
	for _, rt := range f.Routes {
		if strings.Contains(err.Error(), fmt.Sprintf("route %q: cannot listen on", rt.Name)) {
			rng := rt.ListenRange
			return &LoadError{Files: f.Files, Diags: hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Cannot listen",
				Detail:   fmt.Sprintf("%v. Stop what uses the address, or choose another.", err),
				Subject:  &rng,
			}}}
		}
	}
	return fmt.Errorf("applying %s: %w", f.Path, err)
}

// watch makes the watcher cover the directories of the file and of every
// plugin it names, and records the files to fingerprint.
func (r *Runner) watch(abs string, f *File) {
	files := []string{abs}
	for _, p := range f.Plugins {
		if p.Path == "" {
			continue
		}
		if a, err := filepath.Abs(p.Path); err == nil {
			files = append(files, a)
		}
	}
	files = append(files, f.tlsFiles()...) // certificates reload too
	// And the files file() read.
	for _, p := range f.included {
		if a, err := filepath.Abs(p); err == nil {
			files = append(files, a)
		}
	}
	sort.Strings(files[1:])
	r.files = slices.Compact(files[1:])
	r.absPath = abs
	want := map[string]bool{}
	for _, p := range files {
		want[filepath.Dir(p)] = true
	}
	for d := range r.dirs {
		if !want[d] {
			r.watcher.Remove(d)
			delete(r.dirs, d)
		}
	}
	for d := range want {
		if r.dirs[d] {
			continue
		}
		if err := r.watcher.Add(d); err != nil {
			r.logger().Warn("cannot watch directory for changes; reload with SIGHUP", "dir", d, "err", err)
			continue
		}
		r.dirs[d] = true
	}
}

// fingerprint hashes the configuration source (present: the file could be
// read) and the content of the files it names (plugins, certificates and
// keys, what file() read). A missing file hashes apart from an empty one: a
// file deleted, then created again empty, is a change to reload for and
// report.
func fingerprint(src []byte, present bool, files []string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(presence(present))
	h.Write(src)
	h.Write([]byte{0})
	for _, p := range files {
		fmt.Fprintf(h, "%s\x00", p)
		f, err := regfile.Open(p) // a regular file, without blocking
		h.Write(presence(err == nil))
		if err == nil {
			io.Copy(h, io.LimitReader(f, maxWasmFile))
			f.Close()
		}
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// presence is the byte fingerprint writes before a file's content: 1 when
// the file could be opened, 0 when not.
func presence(ok bool) []byte {
	if ok {
		return []byte{1}
	}
	return []byte{0}
}

func (r *Runner) logDiag(level slog.Level, d *hcl.Diagnostic) {
	attrs := []any{"summary", d.Summary, "hint", oneLine(d.Detail)}
	if d.Subject != nil {
		attrs = append([]any{"at", shortRange(*d.Subject)}, attrs...)
	}
	msg := "configuration error"
	if d.Severity == hcl.DiagWarning {
		msg = "configuration warning"
	}
	r.logger().Log(context.Background(), level, msg, attrs...)
}

// Reload loads the file again and, when it is valid, applies it. On error the
// running configuration stays and the diagnostics are logged.
func (r *Runner) Reload(ctx context.Context) error {
	return r.reload(ctx, "manual")
}

func (r *Runner) reload(ctx context.Context, trigger string) error {
	r.mu.Lock()
	if !r.started {
		r.mu.Unlock()
		return errors.New("runner not started")
	}
	err := r.load(ctx)
	routes := r.routes
	r.mu.Unlock()
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			for _, d := range le.Diags {
				lvl := slog.LevelError
				if d.Severity == hcl.DiagWarning {
					lvl = slog.LevelWarn
				}
				r.logDiag(lvl, d)
			}
		}
		r.logger().Error("reload failed; keeping the running configuration", "trigger", trigger, "file", r.Path, "err", oneLine(firstLine(err)))
	} else {
		r.logger().Info("configuration reloaded", "trigger", trigger, "file", r.Path, "routes", routes)
	}
	if r.OnReload != nil {
		r.OnReload(Reload{Trigger: trigger, Err: err, Routes: routes})
	}
	return err
}

func firstLine(err error) string {
	var le *LoadError
	if errors.As(err, &le) {
		n := 0
		for _, d := range le.Diags {
			if d.Severity == hcl.DiagError {
				n++
			}
		}
		return fmt.Sprintf("%d error(s) in the configuration", n)
	}
	return err.Error()
}

// Addr returns the bound address of the route named name, or nil.
func (r *Runner) Addr(name string) net.Addr { return r.proxy.Addr(name) }

// Run reloads on every value from hup and on file changes until ctx ends;
// the routes keep serving until Shutdown or Close. It returns nil when ctx
// ends, or an error if the file watcher fails.
func (r *Runner) Run(ctx context.Context, hup <-chan os.Signal) error {
	if !r.started {
		return errors.New("runner not started")
	}
	debounce := r.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	w := r.watcher // Close clears r.watcher; it must not be called before Run returns
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// A check is pending from the first event on (armed). An event on a
	// file the configuration reads puts it off by debounce again, but
	// never past first + maxDebounceDelay × debounce; an event on any
	// other name (a log file next to tunnel.hcl, but also Kubernetes'
	// ..data symlink) only arms it: a busy neighbour cannot starve a
	// reload.
	var armed bool
	var first time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			r.reload(ctx, "SIGHUP")
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("the file watcher stopped")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			now := time.Now()
			switch {
			case !armed:
				armed, first = true, now
				timer.Reset(debounce)
			case r.watched(ev.Name):
				timer.Reset(min(debounce, first.Add(maxDebounceDelay*debounce).Sub(now)))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("the file watcher stopped")
			}
			r.logger().Warn("watching the configuration", "err", err)
		case <-timer.C:
			armed = false
			if r.changed() {
				r.reload(ctx, "file change")
			}
		}
	}
}

// changed reports whether the configuration file, or a file it names (see
// watch), differs from what the last load read.
func (r *Runner) changed() bool {
	// As the load reads it: a FIFO put in its place blocked the watch
	// loop in open(2), and with it every later stop signal (SIGKILL alone
	// ended the process); /dev/zero behind a symbolic link was read until
	// the memory ran out.
	src, err := readConfig(r.Path)
	r.mu.Lock()
	defer r.mu.Unlock()
	return fingerprint(src, err == nil, r.files) != r.lastSeen
}

// watched reports whether name is the configuration file or a file it names
// (a plugin, a certificate or key, a file() read).
func (r *Runner) watched(name string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if abs == r.absPath {
		return true
	}
	for _, f := range r.files {
		if f == abs {
			return true
		}
	}
	return false
}

// Shutdown stops accepting on every route and waits for open connections to
// finish; when ctx ends first the remaining ones are closed and ctx's error
// is returned. Then it releases the plugins, the compiled modules and the
// runtime. Call it after Run returns.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.Drain()
	err := r.proxy.Shutdown(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release(context.Background())
	return err
}

// Close stops serving at once (open connections are closed) and releases
// everything. Use it instead of Run.
func (r *Runner) Close() error {
	r.Drain()
	err := r.proxy.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release(context.Background())
	return err
}

// release frees the watcher, modules and runtime; r.mu is held or the
// Runner is not started.
func (r *Runner) release(ctx context.Context) {
	if r.watcher != nil {
		r.watcher.Close()
		r.watcher = nil
	}
	r.builder.Close(ctx)
	if r.rt != nil {
		if err := r.rt.Close(ctx); err != nil {
			r.logger().Warn("closing the WebAssembly runtime", "err", err)
		}
		r.rt = nil
	}
	r.started = false
}
