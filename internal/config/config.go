// Package config loads tunnel.hcl: the routes the tunnel serves and the
// WebAssembly plugins that filter them.
//
// Loading happens in two steps so that every problem in a file can be
// reported at once, with its position:
//
//  1. [Parse] reads the HCL, decodes it with gohcl, and checks everything that
//     needs no plugin code: unknown or misspelt attributes, wrong types,
//     durations, sizes and limits out of range, malformed or duplicate
//     addresses, chains naming undefined plugins. The result is a [File]:
//     plain data that still remembers where each value came from.
//  2. [Builder.Build] compiles the referenced .wasm files, instantiates one
//     plugin per chain link with that link's config (so a plugin that rejects
//     its config is reported at the config attribute) and returns the
//     [host.Route]s to hand to [host.Proxy.Apply].
//
// [Runner] ties both to a [host.Proxy] and reloads on SIGHUP and on changes of
// the file or of any .wasm it references.
//
// The file format:
//
//	plugin "deny" {
//	  path         = "plugins/deny.wasm" # relative to this file
//	  memory_limit = "64MiB"             # per instance
//	  call_timeout = "100ms"             # per guest call
//	  max_output   = "4MiB"              # bytes one guest call may send and log
//	  on_failure   = "close"             # or "bypass"
//	  trusted      = false               # true: no per-call timeout enforcement
//	  instances    = 4                   # instances shared by the connections
//	  stdout       = false               # grant the guest the tunnel's stdout
//	  trip_failures    = 5               # this many failures within trip_window trip the plugin
//	  trip_window      = "10s"
//	  trip_max_backoff = "1m"            # tripped for 1s, then 2s, 4s ... at most this
//	  log_rate         = 100             # guest log lines per second
//	  log_burst        = 200
//	  state_max_value  = "64KiB"         # one value of the plugin's shared state (ABI v2)
//	  state_max_total  = "1MiB"          # all its keys and values, per route
//	}
//
//	route "redis" {
//	  listen          = "127.0.0.1:7000"
//	  target          = env("REDIS_ADDR", "127.0.0.1:6379")
//	  dial            = "target" # or "plugin": a plugin of the chain chooses (set_target); target is then optional
//	  dial_timeout    = "5s"
//	  idle_timeout    = "5m"
//	  max_connections = 1000
//	  proxy_protocol  = false # true or "v1", "v2": tell the target the client's address
//	  dump {
//	    enabled = true
//	    format  = "text" # or "hex"
//	  }
//	  capture {   # pcapng of both legs, before and after the chain
//	    path      = "redis-%Y%m%d.pcapng" # relative to this file
//	    max_size  = "100MiB"              # then start a new file
//	    max_files = 5                     # keep the newest 5
//	  }
//	  chain {
//	    plugin     = plugin.deny # or "deny"
//	    directions = "both"      # or "client_to_server" / "server_to_client"
//	    config     = { pattern = "FLUSHALL", reply = "-ERR not allowed\r\n", from = "client" }
//	  }
//	}
//
// A plugin can only write toward a direction something in the route sees:
// the other one is spliced by the kernel. A link attached to one direction
// whose config has a reply (the bytes answered to the sender) while nothing
// else in the route sees the other direction is therefore an error; attach
// it to both and let the plugin's own setting (deny's from) pick what it
// acts on.
//
// A locals block names values to reuse as local.NAME (each may use the ones
// defined before it):
//
//	locals {
//	  redis = env("REDIS_ADDR", "127.0.0.1:6379")
//	}
//
// Functions available in expressions: env(name[, default]), file(path)
// (relative to the config file), and from go-cty's standard library
// format, join, lower, upper, trimspace, replace, jsonencode, jsondecode,
// concat, merge, min, max.
package config

import (
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host"
)

// File is a decoded and checked tunnel.hcl. Ranges point into the source so
// that later steps (compiling plugins, applying the routes) can report their
// problems at the right place.
type File struct {
	// Path is the file's path as given to Parse.
	Path string
	// Dir is the directory relative paths in the file are resolved against.
	Dir string
	// Plugins in the order they are declared.
	Plugins []*Plugin
	// Routes in the order they are declared.
	Routes []*Route
	// Admin is the admin block; nil when the file has none (no admin
	// endpoint).
	Admin *Admin
	// PluginMemoryLimit is plugin_memory_limit: the most memory the plugins
	// of all routes may take together (see File.PluginMemory); zero means
	// DefaultPluginMemoryLimit(). PluginMemoryLimitRange is its value's
	// range, nil when the file sets none.
	PluginMemoryLimit      uint64
	PluginMemoryLimitRange *hcl.Range
	// Files holds the parsed sources (for printing diagnostics with
	// [WriteDiagnostics]).
	Files map[string]*hcl.File

	// included are the paths the file's file() calls read, or tried to,
	// as resolved: the Runner watches them as it does the plugins' files.
	included []string
}

// Plugin returns the plugin named name, or nil.
func (f *File) Plugin(name string) *Plugin {
	for _, p := range f.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Route returns the route named name, or nil.
func (f *File) Route(name string) *Route {
	for _, r := range f.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Plugin is one plugin block: a .wasm file and the limits its instances run
// under. Zero values mean the runtime's defaults.
type Plugin struct {
	Name string
	// Path is the .wasm file, resolved against the config file's
	// directory; empty for a built-in plugin. For a plugin fetched by
	// URL, the local copy (fetch.go).
	Path string
	// URL is the https:// address the module was fetched from, when path
	// is one; SHA256 is the sha256 attribute (hex), which such a plugin
	// requires and a local file may have.
	URL, SHA256 string
	// Builtin names the plugin compiled into the tunnel (package
	// plugins/builtin) that the block runs instead of a file; PathRange
	// is then the builtin attribute's.
	Builtin     string
	MemoryLimit uint64
	CallTimeout time.Duration
	// MaxOutput is max_output: the bytes one call of the guest may send,
	// log and write to a granted stdout (plugin.Options.MaxOutput);
	// more fails the call, and on_failure applies. "64KiB" to "256MiB";
	// default "4MiB" (plugin.DefaultMaxOutput). Sized for the plugin's
	// largest answer to one input buffer (64 KiB with the Go SDK's
	// default), it stops a guest that floods a connection.
	MaxOutput int
	// FailOpen is on_failure = "bypass".
	FailOpen  bool
	Trusted   bool
	Instances int
	// Stdout grants the guest the tunnel's standard output.
	Stdout bool
	// TripFailures, TripWindow and TripMaxBackoff are trip_failures,
	// trip_window and trip_max_backoff: the crash-loop breaker
	// (plugin.Options). TripFailures is -1 for trip_failures = 0 (never
	// trip).
	TripFailures   int
	TripWindow     time.Duration
	TripMaxBackoff time.Duration
	// StateMaxValue and StateMaxTotal are state_max_value and
	// state_max_total: the bounds of the plugin's shared state (ABI v2
	// state_*), one value and all keys and values of one route's store
	// (plugin.Options); zero means the defaults, "64KiB" and "1MiB".
	StateMaxValue, StateMaxTotal int
	// LogRate and LogBurst are log_rate and log_burst: the guest's log
	// lines per second and burst (plugin.Options).
	LogRate  int
	LogBurst int

	DeclRange hcl.Range
	PathRange hcl.Range
}

// Route is one route block.
type Route struct {
	Name        string
	Listen      string
	Target      string
	DialTimeout time.Duration
	IdleTimeout time.Duration
	MaxConns    int
	// ProxyProtocol sends a PROXY protocol v1 header to the target before
	// the client's bytes (host.ProxyProtocol).
	ProxyProtocol bool
	// ProxyProtocolVersion is 1 (text) or 2 (binary, with TLS TLVs, from
	// proxy_protocol = "v2") when ProxyProtocol is set.
	ProxyProtocolVersion int
	// ReusePort binds the listen address with SO_REUSEPORT
	// (host.Route.ReusePort), for an upgrade without refused connections.
	ReusePort bool
	// LateDial (dial = "plugin") lets a plugin of the chain choose the
	// target (host.Route.LateDial); Target is then optional.
	LateDial bool
	// TLS is the tls block (terminate TLS from clients); nil without one.
	TLS *TLS
	// UpstreamTLS is the upstream_tls block (originate TLS toward the
	// target); nil without one.
	UpstreamTLS *UpstreamTLS
	// ServerNames is server_names: the route is chosen by the ClientHello's
	// server name among the routes of its listen address (tls.go).
	ServerNames []string
	// HandshakeTimeout is handshake_timeout (host.Route.HandshakeTimeout).
	HandshakeTimeout time.Duration
	// AcceptProxy and TrustedProxies are accept_proxy and trusted_cidrs:
	// read a PROXY header from the peers of these networks.
	AcceptProxy    bool
	TrustedProxies []netip.Prefix
	// Dump is nil when the route prints nothing.
	Dump *Dump
	// Capture is nil when the route records no pcapng.
	Capture *Capture
	Chain   []*Link

	DeclRange   hcl.Range
	ListenRange hcl.Range
	TargetRange hcl.Range
	// ServerNamesRange and AcceptProxyRange are those attributes' values
	// (zero when absent).
	ServerNamesRange hcl.Range
	AcceptProxyRange hcl.Range
	serverNameRanges []hcl.Range
}

// Dump is a route's dump block: print every chunk to standard output.
type Dump struct {
	// Format is "hex" or "text".
	Format string
}

// Capture is a route's capture block: write its traffic, before and after
// the chain, as pcapng (package host/capture).
type Capture struct {
	// Path is the file, resolved against the config file's directory,
	// with its strftime-like directives unexpanded.
	Path     string
	MaxSize  int64
	MaxFiles int

	PathRange hcl.Range
}

// Link is one chain block.
type Link struct {
	// Plugin names a plugin block of the same file.
	Plugin     string
	Directions host.Directions
	// Config is the config attribute as JSON; nil when absent.
	Config []byte

	DeclRange   hcl.Range
	PluginRange hcl.Range
	// DirectionsRange is the directions attribute's value, or the chain
	// block when there is none.
	DirectionsRange hcl.Range
	// ConfigRange is the config attribute's value, or the chain block when
	// there is none.
	ConfigRange hcl.Range
}
