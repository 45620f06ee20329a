// Package abi holds the numbers of the tunnel plugin ABI, shared by the host
// and the Go SDK. The ABI itself is specified in prose in sdk/ABI.md; a test
// keeps these constants and that document in step: every constant declared
// here appears in one of the document's tables with the same value.
//
// The package uses only the standard library and imports nothing from the
// host, so guests (GOOS=wasip1) and hosts can both depend on it.
package abi

// Version is the ABI version this package describes. A guest's
// tunnel_abi_version export returns the version it speaks: Version or
// OldestVersion (the host speaks every version in between).
const Version = 2

// OldestVersion is the oldest ABI version the host still speaks. A guest
// that returns it may use only that version's imports and exports.
const OldestVersion = 1

// ImportModule is the module name of every host function.
const ImportModule = "tunnel"

// WASIModule is the only other import module a guest may use: WASI preview 1,
// which Go's GOOS=wasip1 builds need. The host instantiates it with nothing
// granted (no files, network, environment or arguments).
const WASIModule = "wasi_snapshot_preview1"

// Guest exports.
const (
	ExportMemory     = "memory"
	ExportABIVersion = "tunnel_abi_version" // () -> i32
	ExportInit       = "tunnel_init"        // () -> i32
	ExportOnOpen     = "tunnel_on_open"     // (conn i64) -> i32
	ExportOnData     = "tunnel_on_data"     // (conn i64, dir i32, len i32, end i32) -> i32
	ExportOnClose    = "tunnel_on_close"    // (conn i64)
	ExportOnTimer    = "tunnel_on_timer"    // (conn i64) -> i32; ABI v2
	// ExportInitialize is the WASI reactor's start function (Go's
	// -buildmode=c-shared builds export it). When present the host calls
	// it once per instance, before tunnel_abi_version.
	ExportInitialize = "_initialize" // ()
)

// Host imports (module ImportModule).
const (
	ImportInputBuffer = "input_buffer" // (ptr i32, cap i32) -> i32
	ImportConfig      = "config"       // (buf i32, limit i32) -> i32
	ImportConfigError = "config_error" // (ptr i32, len i32)
	ImportConnInfo    = "conn_info"    // (key i32, buf i32, limit i32) -> i32
	ImportSend        = "send"         // (dir i32, ptr i32, len i32) -> i32
	ImportCloseWrite  = "close_write"  // (dir i32) -> i32
	ImportClose       = "close"        // () -> i32
	ImportLog         = "log"          // (level i32, ptr i32, len i32)

	// ABI v2.
	ImportNow       = "now"        // () -> i64
	ImportSetTimer  = "set_timer"  // (conn i64, ns i64) -> i32
	ImportSetTarget = "set_target" // (conn i64, ptr i32, len i32) -> i32
	ImportSetTag    = "set_tag"    // (conn i64, kptr i32, klen i32, vptr i32, vlen i32) -> i32
	ImportGetTag    = "get_tag"    // (conn i64, kptr i32, klen i32, buf i32, limit i32) -> i32
	ImportDeferEnd  = "defer_end"  // (conn i64, dir i32) -> i32
	ImportPauseRead = "pause_read" // (conn i64, dir i32, pause i32) -> i32

	// ABI v2: shared state, per plugin (see ABI.md).
	ImportStateGet    = "state_get"    // (kptr i32, klen i32, buf i32, limit i32) -> i32
	ImportStateSet    = "state_set"    // (kptr i32, klen i32, vptr i32, vlen i32) -> i32
	ImportStateDelete = "state_delete" // (kptr i32, klen i32) -> i32
	ImportStateCAS    = "state_cas"    // (kptr i32, klen i32, optr i32, olen i32, nptr i32, nlen i32) -> i32
	ImportStateAdd    = "state_add"    // (kptr i32, klen i32, delta i64, out i32) -> i32

	// ABI v2: plugin metrics.
	ImportMetricDefine  = "metric_define"  // (kind i32, nptr i32, nlen i32, lptr i32, llen i32, bptr i32, bcount i32) -> i32
	ImportMetricAdd     = "metric_add"     // (id i32, delta i64) -> i32
	ImportMetricSet     = "metric_set"     // (id i32, value i64) -> i32
	ImportMetricObserve = "metric_observe" // (id i32, value f64) -> i32
)

// Directions.
const (
	DirClientToServer = 0
	DirServerToClient = 1
)

// Actions returned by tunnel_on_data.
const (
	// ActionForward forwards the presented bytes unchanged, after anything
	// the guest sent toward the same direction during the call.
	ActionForward = 0
	// ActionDrop forwards nothing of the presented bytes; what the guest sent
	// during the call stands (this is how a guest rewrites).
	ActionDrop = 1
	// ActionHold keeps the presented bytes on the host and presents them
	// again, followed by the next chunk, at the next tunnel_on_data for the
	// same connection and direction. Holding bytes that already fill the
	// whole input buffer is an ABI violation. With end=1 it acts as
	// ActionForward (there is no next chunk).
	ActionHold = 2
)

// Results of tunnel_init and tunnel_on_open.
const (
	// OK accepts.
	OK = 0
	// Reject: tunnel_init rejects its configuration (the guest calls
	// config_error first to say why); tunnel_on_open refuses the connection.
	Reject = 1
)

// Status codes returned by host functions.
const (
	StatusOK          = 0
	StatusBadArgument = -1 // unknown direction, level or key; bad input buffer
	StatusClosed      = -2 // that direction or the connection is already closed
	StatusNotAllowed  = -3 // not inside a connection callback, or direction spliced
	StatusTooLarge    = -4 // value larger than allowed, or too many of them (tags, state, metrics)
	StatusNoLateDial  = -5 // set_target on a route that dials its fixed target
	StatusAlreadySet  = -6 // set_target after the target was chosen; metric_define of a conflicting name
	StatusNotFound    = -7 // get_tag, state_get or state_delete of what is not set
)

// Bounds of connection tags (set_tag), as the host enforces them.
const (
	MaxTags        = 32
	MaxTagKeyLen   = 64
	MaxTagValueLen = 256
)

// Bounds of the shared state (state_*). The bounds on values and on the
// total are the host's per-plugin configuration; these are the defaults.
const (
	MaxStateKeyLen          = 256
	DefaultStateMaxValueLen = 64 << 10
	DefaultStateMaxTotal    = 1 << 20
)

// Kinds of metrics for metric_define.
const (
	MetricCounter   = 0 // a count that only goes up (metric_add with delta >= 0)
	MetricGauge     = 1 // a value that goes up and down (metric_set, metric_add)
	MetricHistogram = 2 // a distribution of observations (metric_observe)
)

// Bounds of plugin metrics (metric_define), as the host enforces them.
const (
	MaxMetrics          = 256 // series (name and label values) per plugin
	MaxMetricNameLen    = 128 // bytes of a metric name, before the host's prefix
	MaxMetricLabels     = 8   // labels per series
	MaxMetricLabelLen   = 128 // bytes of a label name or value
	MaxHistogramBuckets = 32  // upper bounds per histogram (+Inf is implicit)
)

// Keys for conn_info.
const (
	InfoRoute  = 0 // route name
	InfoClient = 1 // client address, host:port
	InfoTarget = 2 // target address, host:port
	InfoListen = 3 // local address the client connected to
	// The client's TLS session, on a route that terminates TLS (tls block);
	// InfoServerName also on a route chosen by server name. Empty otherwise.
	InfoServerName   = 4 // the server name the client asked for (SNI)
	InfoALPN         = 5 // the negotiated application protocol
	InfoTLSVersion   = 6 // "1.2" or "1.3"
	InfoPeerSubject  = 7 // the client certificate's subject (mutual TLS)
	InfoPeerNames    = 8 // its DNS and URI SANs, comma-separated
	InfoPeerVerified = 9 // "true" when a client certificate was verified
)

// Log levels for log, as in log/slog.
const (
	LogDebug = -4
	LogInfo  = 0
	LogWarn  = 4
	LogError = 8
)
