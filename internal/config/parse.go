package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/addr"
)

// Limits enforced on the values of a file.
const (
	MinMemoryLimit  = 1 << 20 // 1 MiB
	MaxMemoryLimit  = 4 << 30 // 4 GiB, all a 32-bit WebAssembly memory can address
	MinCallTimeout  = time.Millisecond
	MaxCallTimeout  = time.Minute
	MinMaxOutput    = 64 << 10  // 64 KiB, the Go SDK's input buffer
	MaxMaxOutput    = 256 << 20 // 256 MiB: one call's output is buffered in the tunnel
	MaxInstances    = 1024
	MinStateMax     = 8         // bytes: one state_add counter
	MaxStateMax     = 256 << 20 // 256 MiB: the store is in the tunnel's memory
	MaxDialTimeout  = 10 * time.Minute
	MaxIdleTimeout  = 7 * 24 * time.Hour
	MaxConnections  = 1_000_000
	maxIncludedFile = 1 << 20 // file() refuses larger files
	MaxTripFailures = 1000
	MaxTripTime     = time.Hour // trip_window and trip_max_backoff
	MaxLogRate      = 1_000_000 // log_rate (lines per second) and log_burst
)

// Options adjust how a file is parsed. The zero value reads the real
// environment.
type Options struct {
	// LookupEnv resolves env(); nil means os.LookupEnv.
	LookupEnv func(name string) (string, bool)
	// FetchDir keeps the plugins fetched by URL (fetch.go), named by
	// their hash; empty means a directory in os.TempDir().
	FetchDir string
	// HTTPClient fetches plugins by URL; nil means http.DefaultClient
	// (tests give one that trusts their server's certificate).
	HTTPClient *http.Client
}

// The gohcl schema. Attributes are decoded as expressions so that every value
// is checked with its own source range at hand.
type fileBody struct {
	PluginMemoryLimit hcl.Expression `hcl:"plugin_memory_limit,optional"`

	Locals  []*localsBody `hcl:"locals,block"`
	Plugins []*pluginBody `hcl:"plugin,block"`
	Routes  []*routeBody  `hcl:"route,block"`
	Admin   *adminBody    `hcl:"admin,block"`
}

// localsBody is a locals block: named values, used elsewhere as local.NAME.
type localsBody struct {
	Attrs hcl.Attributes `hcl:",remain"`
}

type pluginBody struct {
	Name        string         `hcl:"name,label"`
	DeclRange   hcl.Range      `hcl:",def_range"`
	Path        hcl.Expression `hcl:"path,optional"`
	Builtin     hcl.Expression `hcl:"builtin,optional"`
	SHA256      hcl.Expression `hcl:"sha256,optional"`
	MemoryLimit hcl.Expression `hcl:"memory_limit,optional"`
	CallTimeout hcl.Expression `hcl:"call_timeout,optional"`
	MaxOutput   hcl.Expression `hcl:"max_output,optional"`
	OnFailure   hcl.Expression `hcl:"on_failure,optional"`
	Trusted     hcl.Expression `hcl:"trusted,optional"`
	Instances   hcl.Expression `hcl:"instances,optional"`
	Stdout      hcl.Expression `hcl:"stdout,optional"`
	// Containment (see plugin.Options).
	TripFailures   hcl.Expression `hcl:"trip_failures,optional"`
	TripWindow     hcl.Expression `hcl:"trip_window,optional"`
	TripMaxBackoff hcl.Expression `hcl:"trip_max_backoff,optional"`
	LogRate        hcl.Expression `hcl:"log_rate,optional"`
	LogBurst       hcl.Expression `hcl:"log_burst,optional"`
	// Shared state (ABI v2).
	StateMaxValue hcl.Expression `hcl:"state_max_value,optional"`
	StateMaxTotal hcl.Expression `hcl:"state_max_total,optional"`
}

type routeBody struct {
	Name        string         `hcl:"name,label"`
	DeclRange   hcl.Range      `hcl:",def_range"`
	Listen      hcl.Expression `hcl:"listen"`
	Target      hcl.Expression `hcl:"target,optional"`
	Dial        hcl.Expression `hcl:"dial,optional"`
	DialTimeout hcl.Expression `hcl:"dial_timeout,optional"`
	IdleTimeout hcl.Expression `hcl:"idle_timeout,optional"`
	MaxConns    hcl.Expression `hcl:"max_connections,optional"`
	ProxyProto  hcl.Expression `hcl:"proxy_protocol,optional"`
	ReusePort   hcl.Expression `hcl:"reuse_port,optional"`
	Dump        *dumpBody      `hcl:"dump,block"`
	Capture     *captureBody   `hcl:"capture,block"`
	Chain       []*chainBody   `hcl:"chain,block"`
	// TLS, SNI routing and PROXY in (tls.go).
	TLS              *tlsBody         `hcl:"tls,block"`
	UpstreamTLS      *upstreamTLSBody `hcl:"upstream_tls,block"`
	ServerNames      hcl.Expression   `hcl:"server_names,optional"`
	HandshakeTimeout hcl.Expression   `hcl:"handshake_timeout,optional"`
	AcceptProxy      hcl.Expression   `hcl:"accept_proxy,optional"`
	TrustedCIDRs     hcl.Expression   `hcl:"trusted_cidrs,optional"`
}

type dumpBody struct {
	DeclRange hcl.Range      `hcl:",def_range"`
	Enabled   hcl.Expression `hcl:"enabled,optional"`
	Format    hcl.Expression `hcl:"format,optional"`
}

type captureBody struct {
	DeclRange hcl.Range      `hcl:",def_range"`
	Path      hcl.Expression `hcl:"path"`
	MaxSize   hcl.Expression `hcl:"max_size,optional"`
	MaxFiles  hcl.Expression `hcl:"max_files,optional"`
}

type chainBody struct {
	DeclRange  hcl.Range      `hcl:",def_range"`
	Plugin     hcl.Expression `hcl:"plugin"`
	Directions hcl.Expression `hcl:"directions,optional"`
	Config     hcl.Expression `hcl:"config,optional"`
}

// readHint is the detail of a configuration file that cannot be read.
func readHint(err error) string {
	if errors.Is(err, syscall.EISDIR) {
		return fmt.Sprintf("%v: name the configuration file, not its directory.", err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("%v. Create it, or name another file (tunnel --config FILE).", err)
	}
	return fmt.Sprintf("%v.", err)
}

// Parse reads and checks the file at path. The File is returned even when
// there are errors (as far as it could be decoded), together with every
// diagnostic found.
func Parse(path string, opts Options) (*File, hcl.Diagnostics) {
	src, err := readConfig(path)
	if err != nil {
		f := &File{Path: path, Dir: filepath.Dir(path), Files: map[string]*hcl.File{}}
		return f, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration file",
			Detail:   readHint(err),
		}}
	}
	return ParseSource(src, path, opts)
}

// ParseSource is Parse for a file already in memory; filename names it in
// diagnostics and relative paths are resolved against its directory.
func ParseSource(src []byte, filename string, opts Options) (*File, hcl.Diagnostics) {
	p := hclparse.NewParser()
	f := &File{Path: filename, Dir: filepath.Dir(filename), Files: p.Files()}
	if diags := checkSource(src, filename); diags != nil {
		// As readConfig returns it (at most one byte past the bound), so
		// that the watcher, which fingerprints the file as read, does not
		// take it for changed at every event in its directory.
		f.Files[filename] = &hcl.File{Bytes: src[:min(len(src), MaxConfigFile+1)]}
		return f, diags
	}
	hf, diags := p.ParseHCL(src, filename)
	if diags.HasErrors() {
		return f, diags
	}
	if fd := checkForNesting(hf.Body); fd != nil {
		return f, append(diags, fd...)
	}
	d := &decoder{file: f, opts: opts}
	d.ctx = d.evalContext(hf.Body)
	d.ctx.Functions = bounded(d.ctx.Functions, &evalBudget{})
	var body fileBody
	diags = append(diags, gohcl.DecodeBody(hf.Body, d.ctx, &body)...)
	d.locals(body.Locals)
	for _, pb := range body.Plugins {
		d.plugin(pb)
	}
	for _, rb := range body.Routes {
		d.route(rb)
	}
	d.admin(body.Admin)
	d.checkNames(body)
	d.checkListens()
	d.checkForwardLoops()
	d.checkUnused()
	d.pluginMemory(body.PluginMemoryLimit)
	if len(body.Routes) == 0 && !diags.HasErrors() && !d.diags.HasErrors() {
		// The whole file's start: an empty file has no other position.
		d.warnf(hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}, "No routes",
			"The file declares no route block, so the tunnel listens on nothing; add a route { listen, target } block.")
	}
	diags = append(diags, d.diags...)
	return f, diags
}

type decoder struct {
	file  *File
	opts  Options
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics
	// pluginDecl is every plugin label in the file, including plugins whose
	// body has errors, so a chain naming them is not reported twice.
	pluginDecl map[string]bool
	used       map[string]bool
}

func (d *decoder) errorf(rng hcl.Range, summary, format string, args ...any) {
	r := rng
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  &r,
	})
}

func (d *decoder) warnf(rng hcl.Range, summary, format string, args ...any) {
	r := rng
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  &r,
	})
}

// evalContext provides plugin.<name> (each plugin's name as a string) and the
// functions.
func (d *decoder) evalContext(body hcl.Body) *hcl.EvalContext {
	names := map[string]cty.Value{}
	d.pluginDecl = map[string]bool{}
	d.used = map[string]bool{}
	// A shallow look at the plugin labels, before the full decode.
	content, _, _ := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "plugin", LabelNames: []string{"name"}}}})
	if content != nil {
		for _, b := range content.Blocks {
			if len(b.Labels) != 1 {
				continue
			}
			names[b.Labels[0]] = cty.StringVal(b.Labels[0])
			d.pluginDecl[b.Labels[0]] = true
		}
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"plugin": cty.ObjectVal(names)},
		Functions: map[string]function.Function{
			"env":        d.envFunc(),
			"file":       d.fileFunc(),
			"format":     stdlib.FormatFunc,
			"join":       stdlib.JoinFunc,
			"lower":      stdlib.LowerFunc,
			"upper":      stdlib.UpperFunc,
			"trimspace":  stdlib.TrimSpaceFunc,
			"replace":    stdlib.ReplaceFunc,
			"jsonencode": stdlib.JSONEncodeFunc,
			"jsondecode": stdlib.JSONDecodeFunc,
			"concat":     stdlib.ConcatFunc,
			"merge":      stdlib.MergeFunc,
			"min":        stdlib.MinFunc,
			"max":        stdlib.MaxFunc,
		},
	}
}

func (d *decoder) envFunc() function.Function {
	lookup := d.opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or the default when it is not set.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			if len(args) > 2 {
				return cty.NilVal, errors.New("env takes a name and at most one default")
			}
			if v, ok := lookup(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it or give a default: env(%q, \"...\")", name, name)
		},
	})
}

func (d *decoder) fileFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Returns the contents of a file, relative to the configuration file.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := d.resolve(args[0].AsString())
			// Recorded even when the read fails: creating the file is a
			// change to reload for.
			d.file.included = append(d.file.included, p)
			st, err := os.Stat(p)
			if err != nil {
				return cty.NilVal, err
			}
			if !st.Mode().IsRegular() {
				return cty.NilVal, fmt.Errorf("%s is not a regular file", p)
			}
			if st.Size() > maxIncludedFile {
				return cty.NilVal, fmt.Errorf("%s is %d bytes; file() reads at most %d", p, st.Size(), maxIncludedFile)
			}
			b, err := readLimited(p, maxIncludedFile)
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

// locals evaluates the locals blocks in source order: a value may use the
// ones defined before it. The result is the variable "local".
func (d *decoder) locals(blocks []*localsBody) {
	var attrs []*hcl.Attribute
	for _, b := range blocks {
		for _, a := range b.Attrs {
			attrs = append(attrs, a)
		}
	}
	sort.Slice(attrs, func(i, j int) bool {
		a, b := attrs[i].Range, attrs[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	all := map[string]bool{}
	for _, a := range attrs {
		all[a.Name] = true
	}
	vals := map[string]cty.Value{}
	seen := map[string]hcl.Range{}
	for _, a := range attrs {
		if first, dup := seen[a.Name]; dup {
			d.errorf(a.NameRange, "Duplicate local value", "local.%s was already defined at %s; give each value its own name.", a.Name, shortRange(first))
			continue
		}
		seen[a.Name] = a.NameRange
		d.ctx.Variables["local"] = cty.ObjectVal(vals)
		v, diags := a.Expr.Value(d.ctx)
		for _, dg := range diags {
			// A reference to a local defined further down.
			for _, tr := range a.Expr.Variables() {
				if tr.RootName() != "local" || len(tr) < 2 || dg.Subject == nil || !dg.Subject.Overlaps(tr.SourceRange()) {
					continue
				}
				name, ok := tr[1].(hcl.TraverseAttr)
				if _, defined := vals[name.Name]; ok && all[name.Name] && !defined {
					dg.Summary = "Local value used before its definition"
					dg.Detail = fmt.Sprintf("local.%s is defined further down; a local value may only use the ones defined before it, so move it up.", name.Name)
				}
			}
		}
		d.diags = append(d.diags, diags...)
		if !diags.HasErrors() && tooBig(v) {
			d.errorf(a.Expr.Range(), "Value too large", "local.%s has more than %d elements; a configuration value may have at most that many.", a.Name, MaxValueElements)
			v = cty.DynamicVal
		}
		if diags.HasErrors() {
			v = cty.DynamicVal // uses of it report nothing more
		}
		vals[a.Name] = v
	}
	d.ctx.Variables["local"] = cty.ObjectVal(vals)
}

// resolve makes a path from the file relative to the file's directory.
func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.file.Dir, p)
}

// value evaluates expr; ok is false when it is absent (null) or broken (the
// diagnostics are recorded).
func (d *decoder) value(expr hcl.Expression) (cty.Value, bool) {
	v, diags := expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
		return cty.NilVal, false
	}
	if tooBig(v) {
		d.errorf(expr.Range(), "Value too large", "This value has more than %d elements; a configuration value may have at most that many.", MaxValueElements)
		return cty.NilVal, false
	}
	return v, true
}

func (d *decoder) convert(expr hcl.Expression, name string, ty cty.Type) (cty.Value, bool) {
	v, ok := d.value(expr)
	if !ok {
		return v, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		d.errorf(expr.Range(), "Incorrect attribute value type", "Inappropriate value for attribute %q: %s.", name, err)
		return cty.NilVal, false
	}
	return cv, true
}

// required reports a missing required attribute (gohcl leaves expression
// fields optional) with an example of what to write.
func (d *decoder) required(expr hcl.Expression, name, block, example string) bool {
	v, diags := expr.Value(d.ctx)
	if diags.HasErrors() || !v.IsNull() {
		return true
	}
	d.errorf(expr.Range(), "Missing required argument", "The argument %q is required in %s; add for example %s = %s.", name, block, name, example)
	return false
}

func (d *decoder) str(expr hcl.Expression, name string) (string, bool) {
	v, ok := d.convert(expr, name, cty.String)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

// proxyProtocol reads proxy_protocol: true or "v1" (the text header), "v2"
// (binary, with the TLS details as TLVs), or false.
func (d *decoder) proxyProtocol(expr hcl.Expression) (bool, int) {
	v, diags := expr.Value(d.ctx)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() {
		d.diags = append(d.diags, diags...)
		return false, 0
	}
	if v.Type() == cty.String {
		switch v.AsString() {
		case "v1":
			return true, 1
		case "v2":
			return true, 2
		}
		d.errorf(expr.Range(), "Invalid proxy_protocol", "proxy_protocol is true or \"v1\" (the text header), \"v2\" (binary, with the TLS server name, ALPN and version), or false; not %q.", v.AsString())
		return false, 0
	}
	if b, ok := d.boolean(expr, "proxy_protocol"); ok && b {
		return true, 1
	}
	return false, 0
}

func (d *decoder) boolean(expr hcl.Expression, name string) (bool, bool) {
	v, ok := d.convert(expr, name, cty.Bool)
	if !ok {
		return false, false
	}
	return v.True(), true
}

// integer reads a whole number within [lo, hi].
func (d *decoder) integer(expr hcl.Expression, name string, lo, hi int64, hint string) (int64, bool) {
	v, ok := d.convert(expr, name, cty.Number)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact {
		d.errorf(expr.Range(), "Invalid "+name, "%s must be a whole number from %d to %d%s.", name, lo, hi, hint)
		return 0, false
	}
	if n < lo || n > hi {
		d.errorf(expr.Range(), "Value out of range", "%s = %d is out of range: it must be from %d to %d%s.", name, n, lo, hi, hint)
		return 0, false
	}
	return n, true
}

// duration reads a Go duration string ("100ms", "5m") within [lo, hi].
func (d *decoder) duration(expr hcl.Expression, name string, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := d.str(expr, name)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(strings.TrimSpace(s)) // as ParseSize allows " 64 MiB "
	if err != nil {
		d.errorf(expr.Range(), "Invalid duration", "%s = %q is not a duration; write a number with a unit, for example \"250ms\", \"5s\" or \"2m\".", name, s)
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(expr.Range(), "Value out of range", "%s = %q is out of range: it must be from %s to %s.", name, s, fmtDuration(lo), fmtDuration(hi))
		return 0, false
	}
	return v, true
}

func fmtDuration(v time.Duration) string {
	switch {
	case v == 0:
		return "0s"
	case v%time.Hour == 0:
		return strconv.FormatInt(int64(v/time.Hour), 10) + "h"
	case v%time.Minute == 0:
		return strconv.FormatInt(int64(v/time.Minute), 10) + "m"
	}
	return v.String()
}

var sizeUnits = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"B", 1},
}

// ParseSize parses a byte size: a whole number followed by B, KiB, MiB, GiB,
// KB, MB or GB (spaces allowed before the unit).
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
			if err != nil || n > math.MaxUint64/u.mult {
				break
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("%q is not a size; write a whole number with one of the units B, KiB, MiB, GiB, KB, MB or GB, for example \"64MiB\" or \"512KiB\"", s)
}

// FormatSize writes a byte size as ParseSize reads it, in the largest
// binary unit that divides it (1MiB, 1536KiB, 7B).
func FormatSize(n uint64) string {
	switch {
	case n%(1<<30) == 0:
		return strconv.FormatUint(n>>30, 10) + "GiB"
	case n%(1<<20) == 0:
		return strconv.FormatUint(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatUint(n>>10, 10) + "KiB"
	}
	return strconv.FormatUint(n, 10) + "B"
}

func (d *decoder) size(expr hcl.Expression, name string, lo, hi uint64) (uint64, bool) {
	s, ok := d.str(expr, name)
	if !ok {
		return 0, false
	}
	n, err := ParseSize(s)
	if err != nil {
		d.errorf(expr.Range(), "Invalid size", "%s: %v.", name, err)
		return 0, false
	}
	if n < lo || n > hi {
		d.errorf(expr.Range(), "Value out of range", "%s = %q is out of range: it must be from %s to %s.", name, s, FormatSize(lo), FormatSize(hi))
		return 0, false
	}
	return n, true
}

// oneOf reads a string that must be one of choices.
func (d *decoder) oneOf(expr hcl.Expression, name string, choices ...string) (string, bool) {
	s, ok := d.str(expr, name)
	if !ok {
		return "", false
	}
	for _, c := range choices {
		if s == c {
			return s, true
		}
	}
	d.errorf(expr.Range(), "Invalid "+name, "%s = %q is not one of %s.", name, s, quoteList(choices))
	return "", false
}

func quoteAll(items []string) []string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return q
}

func quoteList(items []string) string {
	q := quoteAll(items)
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (d *decoder) plugin(pb *pluginBody) {
	p := &Plugin{Name: pb.Name, DeclRange: pb.DeclRange, PathRange: pb.Path.Range()}
	d.file.Plugins = append(d.file.Plugins, p)
	d.pluginSource(pb, p)
	if v, ok := d.size(pb.MemoryLimit, "memory_limit", MinMemoryLimit, MaxMemoryLimit); ok {
		p.MemoryLimit = v
	}
	if v, ok := d.duration(pb.CallTimeout, "call_timeout", MinCallTimeout, MaxCallTimeout); ok {
		p.CallTimeout = v
	}
	if v, ok := d.size(pb.MaxOutput, "max_output", MinMaxOutput, MaxMaxOutput); ok {
		p.MaxOutput = int(v)
	}
	if v, ok := d.size(pb.StateMaxValue, "state_max_value", MinStateMax, MaxStateMax); ok {
		p.StateMaxValue = int(v)
	}
	if v, ok := d.size(pb.StateMaxTotal, "state_max_total", MinStateMax, MaxStateMax); ok {
		p.StateMaxTotal = int(v)
	}
	if v, ok := d.oneOf(pb.OnFailure, "on_failure", "close", "bypass"); ok {
		p.FailOpen = v == "bypass"
	}
	if v, ok := d.boolean(pb.Trusted, "trusted"); ok {
		p.Trusted = v
		if _, absent := d.absent(pb.CallTimeout); v && !absent {
			d.warnf(pb.CallTimeout.Range(), "call_timeout has no effect", "Plugin %q is trusted: it runs without the instrumentation that cuts a call off, so no call is ever timed out and one that never returns hangs its connection. Remove call_timeout, or set trusted = false to enforce it.", pb.Name)
		}
	}
	if v, ok := d.integer(pb.Instances, "instances", 1, MaxInstances, ""); ok {
		p.Instances = int(v)
	}
	if v, ok := d.boolean(pb.Stdout, "stdout"); ok {
		p.Stdout = v
	}
	if v, ok := d.integer(pb.TripFailures, "trip_failures", 0, MaxTripFailures, " (0 never trips the plugin)"); ok {
		p.TripFailures = int(v)
		if v == 0 {
			p.TripFailures = -1
		}
	}
	if v, ok := d.duration(pb.TripWindow, "trip_window", time.Second, MaxTripTime); ok {
		p.TripWindow = v
	}
	if v, ok := d.duration(pb.TripMaxBackoff, "trip_max_backoff", plugin.MinTripBackoff, MaxTripTime); ok {
		p.TripMaxBackoff = v
	}
	if v, ok := d.integer(pb.LogRate, "log_rate", 1, MaxLogRate, " (lines per second)"); ok {
		p.LogRate = int(v)
	}
	if v, ok := d.integer(pb.LogBurst, "log_burst", 1, MaxLogRate, " (lines)"); ok {
		p.LogBurst = int(v)
	}
}

func (d *decoder) route(rb *routeBody) {
	r := &Route{Name: rb.Name, DeclRange: rb.DeclRange, ListenRange: rb.Listen.Range(), TargetRange: rb.Target.Range()}
	d.file.Routes = append(d.file.Routes, r)
	block := fmt.Sprintf("route %q", rb.Name)
	if !d.required(rb.Listen, "listen", block, `"127.0.0.1:9090"`) {
	} else if v, ok := d.str(rb.Listen, "listen"); ok {
		if err := addr.Check(v); err != nil {
			d.errorf(rb.Listen.Range(), "Invalid listen address", "%v.", err)
		} else {
			r.Listen = v
		}
	}
	if _, absent := d.absent(rb.Dial); !absent {
		if v, ok := d.oneOf(rb.Dial, "dial", "target", "plugin"); ok && v == "plugin" {
			r.LateDial = true
			if len(rb.Chain) == 0 {
				d.errorf(rb.Dial.Range(), "Invalid dial", `dial = "plugin" waits for a plugin of the chain to choose the target, and route %q has no chain; add a chain block with a plugin that calls set_target (e.g. the router plugin).`, rb.Name)
			}
		}
	}
	if _, absent := d.absent(rb.Target); absent && r.LateDial {
		// The plugin chooses: no fixed target needed.
	} else if !d.required(rb.Target, "target", block, `"127.0.0.1:8080"`) {
	} else if v, ok := d.str(rb.Target, "target"); ok {
		if err := addr.Check(v); err != nil {
			d.errorf(rb.Target.Range(), "Invalid target address", "%v.", err)
		} else if _, port, _ := net.SplitHostPort(v); port == "0" {
			d.errorf(rb.Target.Range(), "Invalid target address", "target %q has port 0; name the port the server listens on.", v)
		} else if addr.Loops(r.Listen, v) {
			d.errorf(rb.Target.Range(), "Invalid target address", "target %q is the route's own listen address %q: every connection would dial the tunnel itself, until no file descriptor is left; name the server's address.", v, r.Listen)
		} else {
			r.Target = v
		}
	}
	if v, ok := d.duration(rb.DialTimeout, "dial_timeout", time.Millisecond, MaxDialTimeout); ok {
		r.DialTimeout = v
	}
	if v, ok := d.duration(rb.IdleTimeout, "idle_timeout", 0, MaxIdleTimeout); ok {
		r.IdleTimeout = v
	}
	if v, ok := d.integer(rb.MaxConns, "max_connections", 0, MaxConnections, " (0 means no limit)"); ok {
		r.MaxConns = int(v)
	}
	r.ProxyProtocol, r.ProxyProtocolVersion = d.proxyProtocol(rb.ProxyProto)
	if v, ok := d.boolean(rb.ReusePort, "reuse_port"); ok {
		r.ReusePort = v
	}
	if db := rb.Dump; db != nil {
		enabled := true
		if v, ok := d.boolean(db.Enabled, "enabled"); ok {
			enabled = v
		}
		format := "text"
		if _, absent := d.absent(db.Format); !absent {
			if v, ok := d.oneOf(db.Format, "format", "hex", "text"); ok {
				format = v
			}
		}
		if enabled {
			r.Dump = &Dump{Format: format}
		}
	}
	if cb := rb.Capture; cb != nil {
		d.capture(r, cb)
	}
	for _, cb := range rb.Chain {
		d.link(r, cb)
	}
	d.routeTLS(r, rb)
	d.checkReplies(r)
}

// capture reads a route's capture block.
func (d *decoder) capture(r *Route, cb *captureBody) {
	c := &Capture{PathRange: cb.Path.Range()}
	ok := true
	if !d.required(cb.Path, "path", "capture", `"capture-%Y%m%d.pcapng"`) {
		ok = false
	} else if path, valid := d.str(cb.Path, "path"); !valid {
		ok = false
	} else if err := capture.CheckPath(d.resolve(path)); err != nil {
		d.errorf(cb.Path.Range(), "Invalid capture path", "%s.", strings.TrimPrefix(err.Error(), "capture: "))
		ok = false
	} else {
		c.Path = d.resolve(path)
	}
	if _, absent := d.absent(cb.MaxSize); !absent {
		if v, valid := d.size(cb.MaxSize, "max_size", MinCaptureSize, MaxCaptureSize); valid {
			c.MaxSize = int64(v)
		} else {
			ok = false
		}
	}
	if v, valid := d.integer(cb.MaxFiles, "max_files", 0, MaxCaptureFiles, " (0 keeps every file)"); valid {
		c.MaxFiles = int(v)
	}
	if ok {
		r.Capture = c
	}
}

// Limits of a capture block.
const (
	MinCaptureSize  = 1 << 20
	MaxCaptureSize  = 1 << 40
	MaxCaptureFiles = 100000
)

// checkReplies reports a link whose config has a reply (by the built-in
// plugins' convention, the bytes answered to the sender of what the plugin
// blocks) while it is attached to one direction only and nothing else in
// the route sees the other one. That direction is then spliced by the
// kernel, no plugin can write to it (host.ErrNotAttached), and every reply
// would be lost, leaving the sender waiting for an answer.
func (d *decoder) checkReplies(r *Route) {
	for _, l := range r.Chain {
		// back is the direction a reply travels, other its spelling.
		var sender string
		var back host.Direction
		var other host.Directions
		switch l.Directions {
		case host.OnlyClientToServer:
			sender, back, other = "client", host.ServerToClient, host.OnlyServerToClient
		case host.OnlyServerToClient:
			sender, back, other = "server", host.ClientToServer, host.OnlyClientToServer
		default:
			continue
		}
		if !hasReply(l.Config) || reaches(r, back) {
			continue
		}
		d.errorf(l.DirectionsRange, "Reply cannot reach the sender",
			"This link sees only %s and nothing else in route %q sees %s, so the tunnel splices that direction in the kernel and no plugin can write to it: the reply in config would never reach the %s. "+
				"Attach the link to both directions (remove directions); to act only on what the %s sends, use the plugin's own setting for it, such as deny's from = %q in config.",
			l.Directions, r.Name, other, sender, sender, sender)
	}
}

// hasReply reports whether a link's config JSON is an object with a
// non-empty string "reply".
func hasReply(config []byte) bool {
	var c map[string]json.RawMessage
	var reply string
	if json.Unmarshal(config, &c) != nil || json.Unmarshal(c["reply"], &reply) != nil {
		return false
	}
	return reply != ""
}

// reaches reports whether anything in route r is attached to direction dir,
// so that a plugin can write toward it.
func reaches(r *Route, dir host.Direction) bool {
	if r.Dump != nil || r.Capture != nil || r.ProxyProtocol && dir == host.ClientToServer {
		return true
	}
	for _, l := range r.Chain {
		if l.Plugin != "" && l.Directions.Has(dir) {
			return true
		}
	}
	return false
}

// absent reports whether an optional attribute was left out (or set to null).
func (d *decoder) absent(expr hcl.Expression) (cty.Value, bool) {
	v, diags := expr.Value(d.ctx)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	return v, v.IsNull()
}

func (d *decoder) link(r *Route, cb *chainBody) {
	l := &Link{DeclRange: cb.DeclRange, PluginRange: cb.Plugin.Range(), DirectionsRange: cb.DeclRange, ConfigRange: cb.DeclRange}
	r.Chain = append(r.Chain, l)
	if d.required(cb.Plugin, "plugin", fmt.Sprintf("a chain block of route %q", r.Name), "plugin.NAME") {
		l.Plugin = d.pluginRef(cb.Plugin)
	}
	if _, absent := d.absent(cb.Directions); !absent {
		l.DirectionsRange = cb.Directions.Range()
	}
	if v, ok := d.oneOf(cb.Directions, "directions", "both", "client_to_server", "server_to_client"); ok {
		switch v {
		case "client_to_server":
			l.Directions = host.OnlyClientToServer
		case "server_to_client":
			l.Directions = host.OnlyServerToClient
		}
	}
	if _, absent := d.absent(cb.Config); !absent {
		l.ConfigRange = cb.Config.Range()
		if v, ok := d.value(cb.Config); ok {
			b, err := ctyjson.Marshal(v, v.Type())
			if err != nil {
				d.errorf(cb.Config.Range(), "Invalid config", "config cannot be expressed as JSON: %v.", err)
			} else {
				l.Config = b
			}
		}
	}
}

// pluginRef reads a chain's plugin attribute: a string or plugin.<name>.
func (d *decoder) pluginRef(expr hcl.Expression) string {
	var name string
	if tr, diags := hcl.AbsTraversalForExpr(expr); !diags.HasErrors() && tr.RootName() == "plugin" && len(tr) == 2 {
		if a, ok := tr[1].(hcl.TraverseAttr); ok {
			name = a.Name
		}
	}
	if name == "" {
		s, ok := d.str(expr, "plugin")
		if !ok {
			return ""
		}
		name = s
	}
	if !d.pluginDecl[name] {
		d.errorf(expr.Range(), "Undefined plugin", "No plugin %q is defined in this file%s", name, d.suggestPlugin(name))
		return ""
	}
	d.used[name] = true
	return name
}

func (d *decoder) suggestPlugin(name string) string {
	names := make([]string, 0, len(d.pluginDecl))
	for n := range d.pluginDecl {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return `; declare it with a plugin "` + name + `" { path = "...wasm" } block.`
	}
	if s := nameSuggestion(name, names); s != "" {
		return fmt.Sprintf(". Did you mean %q?", s)
	}
	return "; the plugins defined are " + strings.Join(quoteAll(names), ", ") + "."
}

// checkNames reports plugins or routes declared twice.
func (d *decoder) checkNames(body fileBody) {
	seen := map[string]hcl.Range{}
	for _, pb := range body.Plugins {
		if first, dup := seen[pb.Name]; dup {
			d.errorf(pb.DeclRange, "Duplicate plugin", "A plugin named %q was already declared at %s; give each plugin its own name.", pb.Name, shortRange(first))
			continue
		}
		seen[pb.Name] = pb.DeclRange
	}
	seen = map[string]hcl.Range{}
	for _, rb := range body.Routes {
		if first, dup := seen[rb.Name]; dup {
			d.errorf(rb.DeclRange, "Duplicate route", "A route named %q was already declared at %s; give each route its own name.", rb.Name, shortRange(first))
			continue
		}
		seen[rb.Name] = rb.DeclRange
	}
}

// checkForwardLoops reports routes that forward to each other (a's target
// is b's listen address, and b's a's): each connection would go round
// through the tunnel until no descriptor is left. A route whose target is
// its own listener is reported where its target is decoded.
func (d *decoder) checkForwardLoops() {
	routes := d.file.Routes
	hops := make([]addr.Hop, len(routes))
	for i, r := range routes {
		hops[i] = addr.Hop{Listen: r.Listen, Target: r.Target, LateDial: r.LateDial, ServerNames: r.ServerNames, TLS: r.TLS != nil}
		if u := r.UpstreamTLS; u != nil {
			hops[i].UpstreamTLS, hops[i].UpstreamServerName = true, u.Settings.ServerName
		}
	}
	c := addr.Cycle(hops)
	if c == nil {
		return
	}
	path := addr.CyclePath(hops, c, func(i int) string { return routes[i].Name })
	d.errorf(routes[c.Routes[0]].TargetRange, "Routes forward to each other", "Route %s: %s would go round through the tunnel until no file descriptor is left; name a server's address as one of these targets.", path, c.Who())
}

// checkListens reports two routes that would listen on one port: the same
// address, or the same port where one of them listens on every address.
func (d *decoder) checkListens() {
	type bound struct {
		host, port string
		r          *Route
	}
	var seen []bound
	shared := d.checkServerNames() // routes sharing an address by server name
	for _, r := range d.file.Routes {
		if r.Listen == "" {
			continue
		}
		h, port, _ := net.SplitHostPort(r.Listen)
		for _, b := range seen {
			if r.Listen == b.r.Listen && shared[r] && shared[b.r] {
				continue
			}
			// The same address however written ([::1] and [0:0::1],
			// localhost and 127.0.0.1): the second bind would fail.
			same := r.Listen == b.r.Listen || port == b.port && port != "0" && addr.SameHost(h, b.host)
			// Port 0 picks a free port for each listener; otherwise a
			// wildcard host overlaps every host on the same port.
			overlap := port != "0" && port == b.port && (wildcard(h) || wildcard(b.host))
			if !same && !overlap {
				continue
			}
			hint := "give each route its own port"
			switch {
			case port == "0":
				hint = "routes are told apart by their listen address, so give one of them a port"
			case r.Listen != b.r.Listen && shared[r] && shared[b.r]:
				hint = "routes that share an address by server_names must write it the same way"
			}
			d.errorf(r.ListenRange, "Duplicate listen address", "Route %q listens on %s, which route %q (%s) already uses; %s.", r.Name, r.Listen, b.r.Name, shortRange(b.r.ListenRange), hint)
			break
		}
		seen = append(seen, bound{h, port, r})
	}
}

func wildcard(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

func (d *decoder) checkUnused() {
	for _, p := range d.file.Plugins {
		if !d.used[p.Name] {
			d.warnf(p.DeclRange, "Unused plugin", "No route's chain uses plugin %q; add it to a chain or remove the block.", p.Name)
		}
	}
}

// shortRange is "file:line:col".
func shortRange(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// nameSuggestion returns the candidate closest to name when it is close
// enough to be a likely typo, or "".
func nameSuggestion(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if dist := levenshtein(name, c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
