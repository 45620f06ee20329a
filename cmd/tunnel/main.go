// Command tunnel forwards TCP connections and shows or reshapes their bytes.
//
//	tunnel --from 127.0.0.1:9090 --to 127.0.0.1:8080   # plain mode: print every chunk
//	tunnel                                             # run the routes of ./tunnel.hcl
//	tunnel --config FILE                               # run the routes of FILE
//	tunnel validate [FILE]                             # check a config file
//	tunnel plugins                                     # list the built-in plugins
//	tunnel demo                                        # a tunnel in front of a built-in Redis-like server
//
// The traffic dump goes to stdout; the operational log goes to stderr.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/internal/addr"
	"github.com/tunnelwasm/tunnel/internal/config"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// pluginFlag collects --plugin FILE and the --plugin-config that follows it.
type pluginFlag struct{ list *[]plainPlugin }

type plainPlugin struct {
	path       string
	config     string
	configured bool // a --plugin-config was given for it
}

func (p pluginFlag) String() string { return "" }
func (p pluginFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty plugin path")
	}
	if name, ok := strings.CutPrefix(v, builtin.Prefix); ok && builtin.Description(name) == "" {
		return &builtin.UnknownError{Name: name}
	}
	*p.list = append(*p.list, plainPlugin{path: v})
	return nil
}

type pluginConfigFlag struct{ list *[]plainPlugin }

func (p pluginConfigFlag) String() string { return "" }
func (p pluginConfigFlag) Set(v string) error {
	if len(*p.list) == 0 {
		return errors.New("--plugin-config must follow the --plugin it configures")
	}
	last := &(*p.list)[len(*p.list)-1]
	if last.configured {
		return fmt.Errorf("--plugin %s has a --plugin-config already: give one per --plugin", last.path)
	}
	if key := duplicateKey(v); key != "" {
		return fmt.Errorf("setting %q is given twice; the plugin would see only the last one", key)
	}
	last.config, last.configured = v, true
	return nil
}

// duplicateKey returns a key that an object of the JSON text s holds
// twice, at any depth, or "": decoders keep the last value and drop the
// others without a word ({"patterns":["A"],"patterns":["B"]} denies B
// only). Text that is not JSON is left to the plugin to refuse.
func duplicateKey(s string) string {
	dec := json.NewDecoder(strings.NewReader(s))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string token is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top >= 0 && stack[top].object {
					stack[top].key = true
				}
				stack = append(stack, frame{keys: map[string]bool{}, object: true, key: true})
			case '[':
				if top >= 0 && stack[top].object {
					stack[top].key = true
				}
				stack = append(stack, frame{})
			default:
				stack = stack[:top]
			}
			continue
		case string:
			if top >= 0 && stack[top].object && stack[top].key {
				if stack[top].keys[t] {
					return t
				}
				stack[top].keys[t] = true
				stack[top].key = false
				continue
			}
		}
		if top >= 0 && stack[top].object {
			stack[top].key = true
		}
	}
}

// options are the flags of the plain and config modes.
type options struct {
	from, to    string
	config      string
	dump        string
	dialTimeout time.Duration
	idleTimeout time.Duration
	maxConns    int
	grace       time.Duration
	logLevel    string
	pprof       string
	accessLogTo string       // --access-log
	accessLog   *slog.Logger // JSON lines to accessLogTo, or nil
	admin       string
	drainDelay  time.Duration
	plugins     []plainPlugin
	failOpen    bool
	trusted     bool
	cacheDir    string
	proxyProto  bool
	capture     string
	tls         tlsFlags // --tls-cert, --upstream-tls, --accept-proxy ... (tlsflags.go)
	dumpPackets bool     // --dump packets: the client leg's synthetic packets, decoded
	captureSize sizeFlag
	captureKeep int

	// hup receives SIGHUP (see notifyHUP), or is nil: the mode subscribes.
	hup chan os.Signal
	// again is closed by a second SIGINT/SIGTERM (see notifyStop); nil,
	// which never fires, when the caller handles no signals.
	again <-chan struct{}
	// serving, if set, is called right before the routes are applied: until then a
	// stop signal ends the process at once (see exitOnStopWhileStarting).
	serving func()
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tunnel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.from, "from", "", "listen `address` (host:port) of the plain mode")
	fs.StringVar(&o.to, "to", "", "target `address` (host:port) every connection is forwarded to")
	fs.StringVar(&o.config, "config", "", "run the routes of this HCL `file` (default ./tunnel.hcl when --from is not given)")
	fs.StringVar(&o.dump, "dump", "hex", "traffic dump on stdout: hex, text, packets (each chunk as the synthetic Ethernet/IP/TCP packets a sniffer would decode) or none")
	o.dialTimeout, o.grace = host.DefaultDialTimeout, defaultGrace
	fs.Var(durationFlag{&o.dialTimeout, time.Millisecond, config.MaxDialTimeout}, "dial-timeout", "give up dialling the target after this `duration` (1ms to 10m)")
	fs.Var(durationFlag{&o.idleTimeout, 0, config.MaxIdleTimeout}, "idle-timeout", "close a connection idle this `duration` in both directions (0: never)")
	fs.Var(countFlag{&o.maxConns, config.MaxConnections}, "max-conns", "open connections at most; more wait in the backlog (0: no cap; at most 1000000)")
	fs.Var(durationFlag{&o.grace, 0, maxGrace}, "grace", "on SIGINT/SIGTERM, let open connections finish for this `duration`")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	fs.StringVar(&o.accessLogTo, "access-log", "", "append a JSON line per connection when it ends to this `file` (who, where, bytes each way, duration, reason, tags) instead of the log on stderr")
	fs.StringVar(&o.pprof, "pprof", "", "serve net/http/pprof on this `address` (for profiling)")
	fs.StringVar(&o.admin, "admin", "", "serve /metrics, /healthz, /readyz, /config, /connections and POST /drain on this `address`, e.g. 127.0.0.1:9901 (off by default)")
	fs.Var(durationFlag{&o.drainDelay, 0, maxGrace}, "drain-delay", "on SIGINT/SIGTERM, answer 503 on /readyz for this `duration` before the listeners stop")
	fs.Var(pluginFlag{&o.plugins}, "plugin", "run this WASM plugin `file` (or builtin:NAME, see tunnel plugins) on both directions (repeat for a chain, in order)")
	fs.Var(pluginConfigFlag{&o.plugins}, "plugin-config", "configuration `JSON` for the --plugin just before it")
	boolVar(fs, &o.failOpen, "plugin-bypass", false, "when a plugin fails, forward as if it were absent (default: close the connection)")
	boolVar(fs, &o.trusted, "plugin-trusted", false, "run plugins without the infinite-loop guard (faster; a looping plugin can freeze the process)")
	fs.StringVar(&o.capture, "capture", "", "write the traffic, before and after the plugins, as pcapng to this `file` (%Y%m%d allowed; SIGHUP starts a new file)")
	fs.Var(&o.captureSize, "capture-max-size", "with --capture, start a new file past this `size` (1MiB to 1024GiB, e.g. 100MiB; default: never)")
	fs.Var(countFlag{&o.captureKeep, config.MaxCaptureFiles}, "capture-max-files", "with --capture, keep at most this many files, removing the oldest (0: all; at most 100000)")
	boolVar(fs, &o.proxyProto, "proxy-protocol", false, "send a PROXY protocol v1 header to the target, so it sees the client's address")
	fs.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory of the plugin compilation cache (empty: in memory)")
	o.tls.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage:
  tunnel --from ADDR --to ADDR [flags]   forward and print every chunk (plain mode)
  tunnel [--config FILE]                 run the routes of an HCL file (default ./tunnel.hcl)
  tunnel validate [-v] [FILE]            check an HCL file; exit 1 on errors; -v: each plugin's limits
  tunnel plugins                         list the built-in plugins
  tunnel demo [--listen ADDR]            a tunnel in front of a built-in Redis-like server
  tunnel replay FILE.pcapng [flags]      feed a capture's connections through a chain (--help)

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

// repeatedFlag names a flag of fs given more than once in args (as parsed
// by fs) other than the repeatable ones, or "": the flag package keeps the
// last value of --from A --from B and drops the first without a word.
func repeatedFlag(fs *flag.FlagSet, args []string, repeatable ...string) string {
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return ""
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			return ""
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			i++ // its value
		}
		if seen[name] && !slices.Contains(repeatable, name) {
			return name
		}
		seen[name] = true
	}
	return ""
}

// notEmpty are the flags whose empty value would silently mean something
// else: --config "$UNSET" ran ./tunnel.hcl, --capture "" captured nothing.
var notEmpty = map[string]bool{
	"config": true, "from": true, "to": true, "capture": true, "access-log": true,
	"admin": true, "pprof": true, "tls-cert": true, "tls-key": true,
	"tls-client-ca": true, "upstream-ca": true, "accept-proxy": true,
}

// emptyFlag names the first flag of notEmpty given an empty value, or "".
func emptyFlag(fs *flag.FlagSet) string {
	name := ""
	fs.Visit(func(f *flag.Flag) {
		if name == "" && notEmpty[f.Name] && f.Value.String() == "" {
			name = f.Name
		}
	})
	return name
}

// plainOnly are the flags only the plain mode uses.
var plainOnly = map[string]bool{
	"dump": true, "dial-timeout": true, "idle-timeout": true, "max-conns": true,
	"plugin": true, "plugin-config": true, "plugin-bypass": true, "plugin-trusted": true,
	"capture": true, "capture-max-size": true, "capture-max-files": true, "proxy-protocol": true,
}

// plainOnlyGiven names the first plain-mode-only flag given on the command
// line, or "".
func plainOnlyGiven(fs *flag.FlagSet) string {
	name := ""
	fs.Visit(func(f *flag.Flag) {
		if name == "" && plainOnly[f.Name] {
			name = f.Name
		}
	})
	return name
}

// swallowedFlag reports a flag whose value is the name of another flag of
// fs (--access-log --log-level=warn): the first was given no value and
// took the next argument as one, which would otherwise be used as a file
// name or an address while the flag it names is silently not set.
func swallowedFlag(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if err != nil || !strings.HasPrefix(v, "-") {
			return
		}
		name, _, _ := strings.Cut(strings.TrimLeft(v, "-"), "=")
		if fs.Lookup(name) != nil {
			err = fmt.Errorf("--%s %q: that is a flag, not a value; give --%s its value (--%s=VALUE)", f.Name, v, f.Name, f.Name)
		}
	})
	return err
}

// parseLevel sets level from a --log-level value: one of the four names
// the help gives, in any case. slog's own parser also takes offsets
// ("info+2", "warn-4"), which the help never offers and which would
// silently drop or add lines.
func parseLevel(level *slog.Level, s string) error {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return level.UnmarshalText([]byte(s))
	}
	return fmt.Errorf("unknown log level %q", s)
}

// defaultGrace is --grace's default.
const defaultGrace = 10 * time.Second

// maxGrace bounds --grace and --drain-delay.
const maxGrace = time.Hour

// boolFlag is a bool flag whose bad value says what it wants (the flag
// package's own says "parse error").
type boolFlag struct{ b *bool }

func (f boolFlag) String() string {
	if f.b == nil {
		return "false"
	}
	return strconv.FormatBool(*f.b)
}

func (f boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not true or false (the flag alone means true)")
	}
	*f.b = v
	return nil
}

// IsBoolFlag lets the flag stand alone, as a flag.BoolVar does.
func (f boolFlag) IsBoolFlag() bool { return true }

// boolVar is fs.BoolVar with boolFlag's errors.
func boolVar(fs *flag.FlagSet, p *bool, name string, value bool, usage string) {
	*p = value
	fs.Var(boolFlag{p}, name, usage)
}

// countFlag is an int flag from 0 to max, the bound the configuration
// file puts on the same setting.
type countFlag struct {
	n   *int
	max int
}

func (f countFlag) String() string {
	if f.n == nil {
		return "0"
	}
	return strconv.Itoa(*f.n)
}

func (f countFlag) Set(s string) error {
	v, err := strconv.Atoi(s) // out of range: clamped, and judged below
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return errors.New("not a whole number")
	}
	if v < 0 {
		return errors.New("must not be negative")
	}
	if v > f.max {
		return fmt.Errorf("out of range: it must be from 0 to %d", f.max)
	}
	*f.n = v
	return nil
}

// durationFlag is a duration flag within [min, max] whose errors say what
// is wrong (the flag package's own says "parse error" for "5").
type durationFlag struct {
	d        *time.Duration
	min, max time.Duration
}

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		if n, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			switch {
			case n < 0:
				return errors.New("must not be negative")
			case n > float64(f.max/time.Millisecond):
				return fmt.Errorf("must be from %v to %v", f.min, f.max)
			}
			return fmt.Errorf("a duration needs a unit, e.g. %ss or %sms", s, s)
		}
		// A number too large for a duration (9223372036854775808s), or
		// with an exponent (1e30s), and one unit: out of range.
		if num, ok := cutUnit(s); ok {
			if _, nerr := strconv.ParseFloat(num, 64); nerr != nil {
				return errors.New("not a duration (e.g. 5s, 500ms, 1m30s)")
			}
			if strings.HasPrefix(num, "-") {
				return errors.New("must not be negative")
			}
			return fmt.Errorf("must be from %v to %v", f.min, f.max)
		}
		return errors.New("not a duration (e.g. 5s, 500ms, 1m30s)")
	}
	if v < 0 {
		return errors.New("must not be negative")
	}
	if v < f.min || v > f.max {
		return fmt.Errorf("must be from %v to %v", f.min, f.max)
	}
	*f.d = v
	return nil
}

// cutUnit cuts one unit time.ParseDuration knows off the end of s.
func cutUnit(s string) (string, bool) {
	for _, u := range []string{"ns", "us", "µs", "ms", "s", "m", "h"} {
		if num, ok := strings.CutSuffix(s, u); ok {
			return num, true
		}
	}
	return s, false
}

// defaultCacheDir is --cache-dir's default: $TUNNEL_CACHE_DIR, else the
// user's cache directory.
func defaultCacheDir() string {
	if d := os.Getenv("TUNNEL_CACHE_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return d + "/tunnel/wazero"
	}
	return ""
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "replay":
			return runReplay(args[1:], stdout, stderr)
		case "validate":
			return runValidate(args[1:], stdout, stderr)
		case "plugins":
			return runPlugins(args[1:], stdout, stderr)
		case "demo":
			return runDemo(args[1:], stdout, stderr)
		}
	}
	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := swallowedFlag(fs); err != nil {
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 2
	}
	if f := emptyFlag(fs); f != "" {
		fmt.Fprintf(stderr, "tunnel: --%s is empty: give it a value, or leave the flag out\n", f)
		return 2
	}
	if f := repeatedFlag(fs, args, "plugin", "plugin-config"); f != "" {
		fmt.Fprintf(stderr, "tunnel: --%s is given more than once; give it once (the last would silently win)\n", f)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tunnel: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := parseLevel(&level, o.logLevel); err != nil {
		fmt.Fprintf(stderr, "tunnel: --log-level %q: want debug, info, warn or error\n", o.logLevel)
		return 2
	}
	stdout, stderr, logger, closeStderr := forwardingOutputs(fs, stdout, stderr, level)
	defer closeStderr()
	if o.accessLogTo != "" {
		if o.from == "" && o.to == "" {
			// Lines appended to the configuration would break it at the
			// next reload or start.
			path := cmp.Or(o.config, "tunnel.hcl")
			if a, err := os.Stat(o.accessLogTo); err == nil {
				if c, err := os.Stat(path); err == nil && os.SameFile(a, c) {
					fmt.Fprintf(stderr, "tunnel: --access-log %s is the configuration file %s: its JSON lines would be appended to the configuration; name another file\n", o.accessLogTo, path)
					return 2
				}
			}
		}
		al, err := openAccessLog(o.accessLogTo, logger)
		if err != nil {
			fmt.Fprintf(stderr, "tunnel: --access-log: %v\n", err)
			return 1 // the flag is right; the file is not (as --capture's)
		}
		defer al.Close()
		o.accessLog = slog.New(slog.NewJSONHandler(al, nil))
	}

	if o.admin != "" {
		if _, err := addr.Exposed(o.admin); err != nil {
			fmt.Fprintf(stderr, "tunnel: --admin: %v\n", err)
			return 2
		}
	}
	// pprof shows the heap, the goroutines and the command line: checked
	// as --admin is (no host is an error, another machine's reach a
	// warning).
	pprofExposed := false
	if o.pprof != "" {
		var err error
		if pprofExposed, err = addr.Exposed(o.pprof); err != nil {
			fmt.Fprintf(stderr, "tunnel: --pprof: %v\n", err)
			return 2
		}
	}
	ctx, again, stop := notifyStop()
	defer stop()
	o.again = again
	// SIGHUP too, from now: its default action killed the process while
	// it loaded its plugins, silently (status 129).
	o.hup = notifyHUP()
	defer signal.Stop(o.hup)
	var returned func()
	o.serving, returned = exitOnStopWhileStarting(ctx, stderr, closeStderr)
	defer returned()

	if o.pprof != "" {
		// Bound first, as --admin is: an address in use is an error at
		// start, not a log line while the tunnel runs without it.
		ln, err := net.Listen("tcp", o.pprof)
		if err != nil {
			fmt.Fprintf(stderr, "tunnel: --pprof: %v\n", err)
			return 1
		}
		logger.Info("pprof listening", "addr", ln.Addr().String())
		if pprofExposed {
			logger.Warn("PPROF IS REACHABLE FROM OTHER MACHINES: anyone who can connect reads the heap, the goroutines and the command line; listen on 127.0.0.1 unless a firewall keeps others out", "addr", ln.Addr().String())
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("pprof server", "addr", o.pprof, "err", err)
			}
		}()
		defer srv.Close()
	}

	if o.from == "" && o.to == "" {
		path := o.config
		if path == "" {
			path = "tunnel.hcl"
		}
		if f := o.tls.given(); f != "" {
			fmt.Fprintf(stderr, "tunnel: %s belongs to the plain mode (--from/--to); in %s, use a route's tls, upstream_tls or accept_proxy settings\n", f, path)
			return 2
		}
		// The config mode takes these from the file: given here, they
		// would be ignored (a --plugin that filters nothing, a --capture
		// that records nothing).
		if f := plainOnlyGiven(fs); f != "" {
			fmt.Fprintf(stderr, "tunnel: --%s belongs to the plain mode (--from/--to); in %s, set it in a route (chain, capture, dial_timeout, idle_timeout, max_connections, proxy_protocol ...)\n", f, path)
			return 2
		}
		return runConfig(ctx, path, &o, stdout, stderr, logger)
	}
	if o.config != "" {
		fmt.Fprintln(stderr, "tunnel: --config cannot be combined with --from/--to")
		return 2
	}
	if o.from == "" || o.to == "" {
		fmt.Fprintln(stderr, "tunnel: plain mode needs both --from and --to")
		fs.Usage()
		return 2
	}
	if o.capture == "" && (o.captureSize != 0 || o.captureKeep != 0) {
		fmt.Fprintln(stderr, "tunnel: --capture-max-size and --capture-max-files go with --capture FILE")
		fs.Usage()
		return 2
	}
	for _, a := range []struct{ flag, addr string }{{"--from", o.from}, {"--to", o.to}} {
		if err := addr.Check(a.addr); err != nil {
			fmt.Fprintf(stderr, "tunnel: %s: %v\n", a.flag, err)
			return 2
		}
	}
	if _, port, _ := net.SplitHostPort(o.to); port == "0" {
		fmt.Fprintf(stderr, "tunnel: --to %s has port 0; name the port the server listens on\n", o.to)
		return 2
	}
	if addr.Loops(o.from, o.to) {
		fmt.Fprintf(stderr, "tunnel: --to %s is where --from %s listens: every connection would dial the tunnel itself, until no file descriptor is left\n", o.to, o.from)
		return 2
	}
	if err := o.tls.check(); err != nil {
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 2
	}
	dump, format := true, host.DumpHex
	switch strings.ToLower(o.dump) {
	case "hex":
	case "text":
		format = host.DumpText
	case "packets":
		o.dumpPackets = true
	case "none":
		dump = false
	default:
		fmt.Fprintf(stderr, "tunnel: --dump %q: want hex, text, packets or none\n", o.dump)
		return 2
	}
	return runPlain(ctx, &o, dump, format, stdout, stderr, logger)
}

// runPlain serves one route from the flags until ctx is done, printing the
// traffic in format when dump is set.
func runPlain(ctx context.Context, o *options, dump bool, format host.DumpFormat, stdout, stderr io.Writer, logger *slog.Logger) int {
	hup := o.hup
	if hup == nil {
		hup = notifyHUP()
		defer signal.Stop(hup)
	}
	route := host.Route{
		Name:        "default",
		Listen:      o.from,
		Target:      o.to,
		DialTimeout: o.dialTimeout,
		IdleTimeout: o.idleTimeout,
		MaxConns:    o.maxConns,
	}
	if o.proxyProto {
		route.Chain = append(route.Chain, host.Link{Name: "proxy-protocol", Hook: host.ProxyProtocol(), Directions: host.OnlyClientToServer})
	}
	if dump {
		hook := host.Dump(stdout, format)
		if o.dumpPackets {
			hook = capture.Dump(stdout)
		}
		route.Chain = append(route.Chain, host.Link{Name: "dump", Hook: hook})
	}
	if err := o.tls.apply(&route, logger); err != nil { // --tls-cert ... (tlsflags.go)
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 1
	}
	links, release, cleanup, err := loadPlainPlugins(ctx, o, stdout, stderr, logger)
	if err != nil {
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 1
	}
	route.Chain = append(route.Chain, links...)
	route.OnRelease = release // the Proxy closes nothing it did not make
	closeCapture, err := plainCapture(ctx, capture.Options{Path: o.capture, MaxSize: int64(o.captureSize), MaxFiles: o.captureKeep, Logger: logger}, &route, hup)
	if err != nil {
		cleanup()
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 1
	}
	defer closeCapture()

	p := &host.Proxy{Logger: logger, AccessLog: o.accessLog}
	src := &plainSource{p: p, route: route}
	stopAdmin, err := startAdmin(o.admin, false, src, logger)
	if err != nil {
		cleanup()
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 1
	}
	defer stopAdmin()
	if o.serving != nil {
		o.serving() // from here a stop signal drains what Apply opens
	}
	if err := p.Apply([]host.Route{route}); err != nil {
		cleanup()
		fmt.Fprintf(stderr, "tunnel: %v\n", err)
		return 1
	}
	src.state.Store(1)
	<-ctx.Done()
	drain(src, o.drainDelay, o.again, logger)
	if shutdown("proxy shutdown", p.Shutdown, o.grace, o.again, logger) {
		// Otherwise connections may still be calling the plugins:
		// leave the runtime to the process exit.
		cleanup()
	}
	return 0
}

// exitOnStopWhileStarting makes a stop signal (ctx done) that comes before
// serving is called end the process at once, with status 0 as any stop
// does: loading a configuration compiles its plugins, which nothing
// interrupts (a large module takes seconds), and nothing is served yet,
// so there is nothing to drain. Call serving right before the routes are
// applied (their listeners opened): once it has returned the process no
// longer exits by itself, so no listener is ever open when it does, and a
// stop signal after it is a normal stop (drain, grace). Call returned
// when the caller returns without serving (an error), before ctx is
// cancelled. flush writes out what stderr buffers.
func exitOnStopWhileStarting(ctx context.Context, stderr io.Writer, flush func()) (serving, returned func()) {
	var mu sync.Mutex // held by the exit, which never releases it
	starting := true
	gone := make(chan struct{})
	go func() {
		select {
		case <-gone:
		case <-ctx.Done():
			select {
			case <-gone:
				// Both were ready: run returned (closing gone), then its
				// deferred stop cancelled ctx. Not a signal: the exit
				// status is run's (a refused flag's 2 was once 0 here).
				return
			default:
			}
			mu.Lock()
			if !starting {
				mu.Unlock()
				return
			}
			fmt.Fprintln(stderr, "tunnel: stop signal while starting (loading the configuration and its plugins): exiting without serving")
			flush()
			os.Exit(0)
		}
	}()
	var goneOnce sync.Once
	serving = func() {
		mu.Lock()
		starting = false
		mu.Unlock()
	}
	return serving, func() { goneOnce.Do(func() { close(gone) }) }
}

// notifyStop returns a context that ends at the first SIGINT/SIGTERM and a
// channel closed at the second. Both come from one subscription made now, so
// a second signal sent right after the first is never lost, whatever the
// main goroutine is doing; stop unsubscribes.
func notifyStop() (ctx context.Context, again <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	second := make(chan struct{})
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; n < 2; n++ {
			select {
			case <-sigs:
			case <-quit:
				return
			}
			if n == 0 {
				cancel()
			} else {
				close(second)
			}
		}
	}()
	return ctx, second, func() {
		signal.Stop(sigs)
		close(quit)
		<-done
		cancel()
	}
}

// How long shutdown waits for the proxy once it has told it to close the
// remaining connections: after the grace period, and after a second signal.
// Past that the process exits anyway: the kernel closes what is left.
// Then the log's outputs get closeWait each to take their last lines, so
// that the process is gone within grace + 1 s whatever they do.
const (
	stopWaitAfterGrace  = time.Second - 2*closeWait
	stopWaitAfterSecond = 300 * time.Millisecond
)

// shutdown calls stop (the Shutdown of a Proxy or a config.Runner, named
// what in the log), giving open connections grace to finish; when again is
// closed (a second signal) it cuts the grace short. It never waits more
// than grace+stopWaitAfterGrace, or stopWaitAfterSecond after the second
// signal: if stop has not returned by then it logs an error and returns
// anyway, so the process exits. finished reports whether stop returned;
// when it did not, the caller must not release what stop may still use.
// Either way the exit status stays 0: a signal asked for the stop.
func shutdown(what string, stop func(context.Context) error, grace time.Duration, again <-chan struct{}, logger *slog.Logger) (finished bool) {
	logger.Info("shutting down", "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stop(ctx) }()
	var wait time.Duration
	select {
	case err := <-done:
		if err != nil {
			logger.Warn("grace period over; closed the remaining connections", "err", err)
		}
		return true
	case <-ctx.Done():
		wait = stopWaitAfterGrace
	case <-again:
		logger.Warn("second signal: closing now")
		cancel()
		wait = stopWaitAfterSecond
		again = nil // seen
	}
	// stop has been told to close the remaining connections.
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-done:
		if errors.Is(err, context.DeadlineExceeded) {
			logger.Warn("grace period over; closed the remaining connections", "err", err)
		} else if err != nil {
			logger.Warn("closed the remaining connections", "err", err)
		}
		return true
	case <-timer.C:
		logger.Error(what+" did not return "+wait.String()+" after being told to close the remaining connections; exiting with them still open", "grace", grace.String())
	case <-again:
		logger.Error(what+" has not returned and a second signal came: exiting now with connections still open", "grace", grace.String())
	}
	return false
}
