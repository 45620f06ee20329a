package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/config"
	"github.com/tunnelwasm/tunnel/internal/hexdump"
	"github.com/tunnelwasm/tunnel/internal/regfile"
	"github.com/tunnelwasm/tunnel/internal/replay"
)

// runReplay implements `tunnel replay FILE.pcapng`: it feeds the captured
// connections through a route's chain (--config and --route) or a chain of
// --plugin files, and prints what the chain did. Exit status: 0 when no
// plugin failed, 1 when one did, 2 for a usage error.
func runReplay(args []string, stdout, stderr io.Writer) int {
	var o options
	var route, out, format string
	fs := flag.NewFlagSet("tunnel replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "take the chain of a route of this HCL `file`")
	fs.StringVar(&route, "route", "", "the `name` of the route of --config")
	fs.Var(pluginFlag{&o.plugins}, "plugin", "replay through this WASM plugin `file`, or builtin:NAME (repeat for a chain, in order)")
	fs.Var(pluginConfigFlag{&o.plugins}, "plugin-config", "configuration `JSON` for the --plugin just before it")
	boolVar(fs, &o.failOpen, "plugin-bypass", false, "when a plugin fails, go on as if it were absent")
	fs.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory of the plugin compilation cache (empty: in memory)")
	fs.StringVar(&out, "out", "", "also capture the replay as pcapng to this `file`")
	fs.StringVar(&format, "format", "text", "report format: text, hex or json")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tunnel replay FILE.pcapng [--config tunnel.hcl --route NAME | --plugin X.wasm [--plugin-config JSON]]... [--out new.pcapng] [--format text|hex|json]")
		fs.PrintDefaults()
	}
	// The file may come before the flags.
	var file string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		file, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
		// Flags after the file too: a bad one is an error here as well.
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "tunnel replay: %s\n", msg)
		fs.Usage()
		return 2
	}
	if err := swallowedFlag(fs); err != nil {
		fmt.Fprintf(stderr, "tunnel replay: %v\n", err)
		return 2
	}
	switch {
	case file == "":
		return usage("name the capture file to replay")
	case fs.NArg() > 0:
		return usage(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case o.config != "" && len(o.plugins) > 0:
		return usage("--config and --plugin cannot be combined")
	case (o.config == "") != (route == ""):
		return usage("--config and --route go together")
	case format != "text" && format != "hex" && format != "json":
		return usage(fmt.Sprintf("--format %q: want text, hex or json", format))
	}
	var level slog.Level
	if err := parseLevel(&level, o.logLevel); err != nil {
		return usage(fmt.Sprintf("--log-level %q: want debug, info, warn or error", o.logLevel))
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx := context.Background()

	f, err := regfile.Open(file) // a named pipe must not hang the replay
	if err != nil {
		fmt.Fprintf(stderr, "tunnel replay: %v\n", err)
		return 1
	}
	conns, err := replay.Read(f)
	f.Close()
	var cut *replay.TruncatedError
	if errors.As(err, &cut) {
		fmt.Fprintf(stderr, "tunnel replay: %s: warning: %v\n", file, err)
	} else if err != nil {
		fmt.Fprintf(stderr, "tunnel replay: %s: %v\n", file, err)
		return 1
	}
	if len(conns) == 0 {
		fmt.Fprintf(stderr, "tunnel replay: %s: no TCP connection to replay in it (its packets are not TCP over IPv4 or IPv6, or of a link type replay does not read: it reads Ethernet, raw IP and Linux cooked captures)\n", file)
		return 1
	}
	for i, c := range conns {
		for _, g := range c.Gaps {
			fmt.Fprintf(stderr, "tunnel replay: %s: warning: connection #%d (%s -> %s): %v%s\n", file, i+1, c.Client, c.Server, g, gapNote)
		}
	}
	// The plugins log through the replay's log, so that it sees their
	// failures, those that --plugin-bypass hides from the connection too.
	lg := replay.NewLog(logger)
	logger = lg.Logger()

	var chain []host.Link
	if o.config != "" {
		var cleanup func()
		chain, cleanup, err = replayConfigChain(ctx, o.config, route, o.cacheDir, stderr, logger)
		if err != nil {
			fmt.Fprintf(stderr, "tunnel replay: %v\n", err)
			return 1
		}
		defer cleanup()
	} else {
		links, release, cleanup, err := loadPlainPlugins(ctx, &o, io.Discard, stderr, logger)
		if err != nil {
			fmt.Fprintf(stderr, "tunnel replay: %v\n", err)
			return 1
		}
		defer cleanup()
		if release != nil {
			defer release()
		}
		chain = links
	}
	opts := replay.Options{Chain: chain, Log: lg}
	if out != "" {
		// The capture writer never overwrites: it would write NAME-1
		// beside an existing file, which the warn-level log never says.
		if !strings.Contains(out, "%") {
			if _, err := os.Lstat(out); err == nil {
				fmt.Fprintf(stderr, "tunnel replay: --out %s exists; the replay does not overwrite a file: name a new one\n", out)
				return 1
			}
		}
		w, err := capture.Create(capture.Options{Path: out, Logger: logger})
		if err != nil {
			fmt.Fprintf(stderr, "tunnel replay: --out: %v\n", err)
			return 1
		}
		defer w.Close()
		opts.Wrap = func(c []host.Link) []host.Link {
			first, last := capture.Links(w)
			return append(append([]host.Link{first}, c...), last)
		}
	}
	rep, err := replay.Run(ctx, conns, opts)
	if err != nil {
		fmt.Fprintf(stderr, "tunnel replay: %v\n", err)
		return 1
	}
	printReplay(stdout, rep, format)
	if rep.Failed() {
		return 1
	}
	return 0
}

// replayConfigChain builds the chain of route name of the config file,
// without its dump and capture.
func replayConfigChain(ctx context.Context, path, name, cacheDir string, stderr io.Writer, logger *slog.Logger) ([]host.Link, func(), error) {
	f, diags := config.Parse(path, config.Options{})
	r := f.Route(name)
	if !diags.HasErrors() && r == nil {
		return nil, nil, fmt.Errorf("%s has no route %q", path, name)
	}
	if r != nil {
		r.Dump, r.Capture = nil, nil
	}
	b := &config.Builder{Logger: logger}
	var rt *plugin.Runtime
	if len(f.Plugins) > 0 {
		var err error
		if rt, err = plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: cacheDir, Logger: logger}); err != nil {
			return nil, nil, err // "plugin runtime: ..."
		}
		b.Runtime = rt
	}
	set, bdiags := b.Build(ctx, f, diags)
	cleanup := func() {
		set.Close()
		b.Close(ctx)
		if rt != nil {
			rt.Close(ctx)
		}
	}
	diags = append(diags, bdiags...)
	if diags.HasErrors() {
		config.WriteDiagnostics(stderr, diags, f.Files)
		cleanup()
		return nil, nil, fmt.Errorf("%s has errors", path)
	}
	for _, hr := range set.Routes {
		if hr.Name == name {
			return hr.Chain, cleanup, nil
		}
	}
	cleanup()
	return nil, nil, fmt.Errorf("%s has no route %q", path, name)
}

// printReplay writes the report: per connection, each chunk with what the
// chain did, then how the connection ended.
func printReplay(w io.Writer, rep *replay.Report, format string) {
	if format == "json" {
		// Bytes that are not UTF-8 text go as base64 in the *_base64
		// field instead (a JSON string would turn them into U+FFFD).
		type step struct {
			Dir string `json:"dir"`
			// End: the direction's half-close (FIN), where it was
			// recorded; In is empty.
			End             bool   `json:"end,omitempty"`
			In              string `json:"in"`
			InBase64        string `json:"in_base64,omitempty"`
			Forwarded       string `json:"forwarded"`
			ForwardedBase64 string `json:"forwarded_base64,omitempty"`
			Replied         string `json:"replied,omitempty"`
			RepliedBase64   string `json:"replied_base64,omitempty"`
			Verdict         string `json:"verdict"`
			Failure         string `json:"plugin_failure,omitempty"`
		}
		type gap struct {
			Dir    string `json:"dir"`
			Offset int64  `json:"offset"`
			Bytes  int    `json:"missing_bytes"`
		}
		type conn struct {
			Conn   int    `json:"conn"`
			Client string `json:"client"`
			Server string `json:"server"`
			Steps  []step `json:"steps"`
			Err    string `json:"err,omitempty"`
			Cut    bool   `json:"cut,omitempty"`
			Reset  string `json:"reset,omitempty"`
			Gaps   []gap  `json:"gaps,omitempty"`
			// PluginFailure: a plugin failed, whatever its policy.
			PluginFailure string `json:"plugin_failure,omitempty"`
		}
		var out struct {
			Conns  []conn   `json:"conns"`
			Errors []string `json:"errors,omitempty"`
			Failed bool     `json:"failed"`
		}
		for i, c := range rep.Conns {
			jc := conn{Conn: i + 1, Client: c.Conn.Client.String(), Server: c.Conn.Server.String(), Err: c.Err, Cut: c.Cut, Reset: c.Conn.Reset, PluginFailure: c.Failure, Steps: []step{}}
			for _, g := range c.Conn.Gaps {
				jc.Gaps = append(jc.Gaps, gap{g.Dir.String(), g.Offset, g.Bytes})
			}
			for _, s := range c.Steps {
				js := step{Dir: s.Dir.String(), End: s.End, Verdict: s.Verdict(), Failure: s.Failure}
				js.In, js.InBase64 = jsonBytes(s.In)
				js.Forwarded, js.ForwardedBase64 = jsonBytes(s.Forwarded)
				js.Replied, js.RepliedBase64 = jsonBytes(s.Replied)
				jc.Steps = append(jc.Steps, js)
			}
			out.Conns = append(out.Conns, jc)
		}
		out.Errors, out.Failed = rep.Errors, rep.Failed()
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // "client -> server", not "client -\u003e server"
		enc.Encode(out)
		return
	}
	var b []byte
	body := func(data []byte) {
		if format == "hex" {
			b = hexdump.Hex(b, data)
		} else {
			b = hexdump.Text(b, data)
		}
	}
	for i, c := range rep.Conns {
		id := i + 1
		b = fmt.Appendf(b[:0], "#%d %s -> %s: %d chunk(s) recorded\n", id, c.Conn.Client, c.Conn.Server, len(c.Conn.Chunks))
		for _, g := range c.Conn.Gaps {
			b = fmt.Appendf(b, "#%d warning: %v%s\n", id, g, gapNote)
		}
		for _, s := range c.Steps {
			if s.End {
				b = fmt.Appendf(b, "#%d %s end (FIN): %s\n", id, s.Dir, s.Verdict())
			} else {
				b = fmt.Appendf(b, "#%d %s %s: %s\n", id, s.Dir, replay.Bytes(len(s.In), ""), s.Verdict())
			}
			if s.Failure != "" {
				b = fmt.Appendf(b, "#%d   %s\n", id, s.Failure)
			}
			body(s.In)
			if len(s.Forwarded) > 0 && (s.End || s.Verdict() != "forwarded") {
				b = fmt.Appendf(b, "#%d   forwarded %s\n", id, replay.Bytes(len(s.Forwarded), ""))
				body(s.Forwarded)
			}
			if len(s.Replied) > 0 {
				b = fmt.Appendf(b, "#%d   replied %s\n", id, replay.Bytes(len(s.Replied), ""))
				body(s.Replied)
			}
		}
		for d, late := range c.Late {
			if len(late) > 0 {
				b = fmt.Appendf(b, "#%d %s %s after the last chunk\n", id, host.Direction(d), replay.Bytes(len(late), ""))
				body(late)
			}
		}
		if c.Failure != "" {
			b = fmt.Appendf(b, "#%d failed: %s\n", id, c.Failure)
		}
		switch {
		case c.Err != "":
			b = fmt.Appendf(b, "#%d closed with an error: %s\n", id, c.Err)
		case c.Cut && c.Conn.Reset != "":
			b = fmt.Appendf(b, "#%d closed: the recording ends with a reset: %s\n", id, c.Conn.Reset)
		case c.Cut:
			b = fmt.Appendf(b, "#%d closed: the recording ends before the connection did\n", id)
		default:
			b = fmt.Appendf(b, "#%d closed\n", id)
		}
		w.Write(b)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

// gapNote follows a Gap in a warning.
const gapNote = " (packets not captured); the bytes after the gap are replayed as if they followed"

// jsonBytes returns b as a JSON string field, or as base64 in the other
// field when it is not UTF-8.
func jsonBytes(b []byte) (text, b64 string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}
