package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/addr"
	"github.com/tunnelwasm/tunnel/internal/demoredis"
)

// demoListen is where `tunnel demo` listens by default.
const demoListen = "127.0.0.1:7379"

// demoResp is the configuration of the demo's resp plugin: FLUSHALL and
// FLUSHDB never reach the server, and the client gets an error in their
// place among the replies (the plugin reads the protocol both ways, so a
// pipelined client gets its replies in order; the byte-matching deny
// plugin would answer at once, ahead of the replies still due).
const demoResp = `{"block":["FLUSHALL","FLUSHDB"]}`

// runDemo implements `tunnel demo`: the plain mode in front of a built-in
// Redis-like server on a free loopback port, with the dump as text and the
// built-in resp plugin refusing FLUSHALL and FLUSHDB.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tunnel demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", demoListen, "listen `address` (host:port) of the tunnel")
	logLevel := fs.String("log-level", "info", "log level on stderr: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: tunnel demo [--listen ADDR]

Runs the tunnel on ADDR (default %s) in front of a small Redis-like
server built into the tunnel, printing every chunk as text, with the built-in
plugin resp refusing FLUSHALL and FLUSHDB. Then, in another terminal:

  printf 'PING\r\nSET greeting hello\r\nFLUSHALL\r\nGET greeting\r\nQUIT\r\n' | nc 127.0.0.1 7379

It is the plain mode with
  --to (the built-in server) --dump text --plugin builtin:resp --plugin-config '%s'

Flags:
`, demoListen, demoResp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tunnel demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := addr.Check(*listen); err != nil {
		fmt.Fprintf(stderr, "tunnel demo: --listen: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := parseLevel(&level, *logLevel); err != nil {
		fmt.Fprintf(stderr, "tunnel demo: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	stdout, stderr, logger, closeStderr := forwardingOutputs(fs, stdout, stderr, level)
	defer closeStderr()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "tunnel demo: starting the built-in Redis-like server: %v\n", err)
		return 1
	}
	var srv demoredis.Server
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		ln.Close()
		if err := <-served; err != nil {
			logger.Error("built-in Redis-like server", "err", err)
		}
		srv.Close()
	}()
	logger.Info("demo: a Redis-like server built into the tunnel", "addr", ln.Addr().String())

	ctx, again, stop := notifyStop()
	defer stop()
	serving, returned := exitOnStopWhileStarting(ctx, stderr, closeStderr)
	defer returned()
	o := options{
		serving:     serving,
		from:        *listen,
		to:          ln.Addr().String(),
		dialTimeout: host.DefaultDialTimeout,
		grace:       defaultGrace,
		cacheDir:    defaultCacheDir(),
		plugins:     []plainPlugin{{path: "builtin:resp", config: demoResp}},
		again:       again,
	}
	fmt.Fprintf(stderr, "tunnel demo: try, in another terminal:\n  printf 'PING\\r\\nSET greeting hello\\r\\nFLUSHALL\\r\\nGET greeting\\r\\nQUIT\\r\\n' | nc %s\n", demoHint(*listen))
	return runPlain(ctx, &o, true, host.DumpText, stdout, stderr, logger)
}

// demoHint is the demo's listen address as nc takes it; with port 0 the
// port is only known once the listener is bound, and the "listening" log
// line names it.
func demoHint(a string) string {
	if h, p, err := net.SplitHostPort(a); err == nil && p == "0" {
		return h + " PORT  (PORT: the one the \"listening\" line below names)"
	}
	return hostPort(a)
}

// hostPort is an address as nc takes it: "host port".
func hostPort(a string) string {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	return h + " " + p
}
