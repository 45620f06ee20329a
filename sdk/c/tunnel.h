/*
 * tunnel.h: the tunnel plugin ABI (sdk/ABI.md, versions 1 and 2) for C.
 *
 * Header only, no library: it declares the host functions (import module
 * "tunnel") and the guest exports with their export names, and defines the
 * ABI's constants. The values are checked against sdk/abi by
 * `go test ./sdk/c`. Build a plugin with Debian's clang, lld, wasi-libc and
 * libclang-rt-14-dev-wasm32:
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -I sdk/c \
 *         -o plugin.wasm plugin.c
 *
 * or, without libc: clang --target=wasm32 -nostdlib -Wl,--no-entry -O2 ...
 * Define the exports declared below (tunnel_abi_version, tunnel_init,
 * tunnel_on_data; tunnel_on_open, tunnel_on_close and tunnel_on_timer when
 * you need them): the declarations carry the export names, so a plain
 * definition is exported. See examples/plugins/c-deny.
 */
#ifndef TUNNEL_H
#define TUNNEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Versions and modules. */
#define TUNNEL_VERSION 2
#define TUNNEL_OLDEST_VERSION 1
#define TUNNEL_IMPORT_MODULE "tunnel"
#define TUNNEL_WASI_MODULE "wasi_snapshot_preview1"

/* Directions. */
#define TUNNEL_DIR_CLIENT_TO_SERVER 0
#define TUNNEL_DIR_SERVER_TO_CLIENT 1

/* tunnel_on_data results. */
#define TUNNEL_ACTION_FORWARD 0
#define TUNNEL_ACTION_DROP 1
#define TUNNEL_ACTION_HOLD 2

/* tunnel_init and tunnel_on_open results; tunnel_on_timer returns
 * TUNNEL_OK only (anything else is an ABI violation). */
#define TUNNEL_OK 0
#define TUNNEL_REJECT 1

/* Statuses returned by host functions (a length >= 0 is success too). */
#define TUNNEL_STATUS_OK 0
#define TUNNEL_STATUS_BAD_ARGUMENT (-1)
#define TUNNEL_STATUS_CLOSED (-2)
#define TUNNEL_STATUS_NOT_ALLOWED (-3)
#define TUNNEL_STATUS_TOO_LARGE (-4)
#define TUNNEL_STATUS_NO_LATE_DIAL (-5)
#define TUNNEL_STATUS_ALREADY_SET (-6)
#define TUNNEL_STATUS_NOT_FOUND (-7)

/* Tag limits (v2). */
#define TUNNEL_MAX_TAGS 32
#define TUNNEL_MAX_TAG_KEY_LEN 64
#define TUNNEL_MAX_TAG_VALUE_LEN 256

/* Shared state bounds (v2): the key bound is fixed, the others are the
 * host's defaults (configurable per plugin). */
#define TUNNEL_MAX_STATE_KEY_LEN 256
#define TUNNEL_DEFAULT_STATE_MAX_VALUE_LEN 65536
#define TUNNEL_DEFAULT_STATE_MAX_TOTAL 1048576

/* Metric kinds for tunnel_metric_define (v2). */
#define TUNNEL_METRIC_COUNTER 0
#define TUNNEL_METRIC_GAUGE 1
#define TUNNEL_METRIC_HISTOGRAM 2

/* Metric bounds (v2). */
#define TUNNEL_MAX_METRICS 256
#define TUNNEL_MAX_METRIC_NAME_LEN 128
#define TUNNEL_MAX_METRIC_LABELS 8
#define TUNNEL_MAX_METRIC_LABEL_LEN 128
#define TUNNEL_MAX_HISTOGRAM_BUCKETS 32

/* conn_info keys. */
#define TUNNEL_INFO_ROUTE 0
#define TUNNEL_INFO_CLIENT 1
#define TUNNEL_INFO_TARGET 2
#define TUNNEL_INFO_LISTEN 3
#define TUNNEL_INFO_SERVER_NAME 4
#define TUNNEL_INFO_ALPN 5
#define TUNNEL_INFO_TLS_VERSION 6
#define TUNNEL_INFO_PEER_SUBJECT 7
#define TUNNEL_INFO_PEER_NAMES 8
#define TUNNEL_INFO_PEER_VERIFIED 9

/* log levels (log/slog's). */
#define TUNNEL_LOG_DEBUG (-4)
#define TUNNEL_LOG_INFO 0
#define TUNNEL_LOG_WARN 4
#define TUNNEL_LOG_ERROR 8

/* Export names. */
#define TUNNEL_EXPORT_MEMORY "memory"
#define TUNNEL_EXPORT_ABI_VERSION "tunnel_abi_version"
#define TUNNEL_EXPORT_INIT "tunnel_init"
#define TUNNEL_EXPORT_ON_OPEN "tunnel_on_open"
#define TUNNEL_EXPORT_ON_DATA "tunnel_on_data"
#define TUNNEL_EXPORT_ON_CLOSE "tunnel_on_close"
#define TUNNEL_EXPORT_ON_TIMER "tunnel_on_timer"
#define TUNNEL_EXPORT_INITIALIZE "_initialize"

/* Import names. */
#define TUNNEL_IMPORT_INPUT_BUFFER "input_buffer"
#define TUNNEL_IMPORT_CONFIG "config"
#define TUNNEL_IMPORT_CONFIG_ERROR "config_error"
#define TUNNEL_IMPORT_CONN_INFO "conn_info"
#define TUNNEL_IMPORT_SEND "send"
#define TUNNEL_IMPORT_CLOSE_WRITE "close_write"
#define TUNNEL_IMPORT_CLOSE "close"
#define TUNNEL_IMPORT_LOG "log"
#define TUNNEL_IMPORT_NOW "now"
#define TUNNEL_IMPORT_SET_TIMER "set_timer"
#define TUNNEL_IMPORT_SET_TARGET "set_target"
#define TUNNEL_IMPORT_SET_TAG "set_tag"
#define TUNNEL_IMPORT_GET_TAG "get_tag"
#define TUNNEL_IMPORT_DEFER_END "defer_end"
#define TUNNEL_IMPORT_PAUSE_READ "pause_read"
#define TUNNEL_IMPORT_STATE_GET "state_get"
#define TUNNEL_IMPORT_STATE_SET "state_set"
#define TUNNEL_IMPORT_STATE_DELETE "state_delete"
#define TUNNEL_IMPORT_STATE_CAS "state_cas"
#define TUNNEL_IMPORT_STATE_ADD "state_add"
#define TUNNEL_IMPORT_METRIC_DEFINE "metric_define"
#define TUNNEL_IMPORT_METRIC_ADD "metric_add"
#define TUNNEL_IMPORT_METRIC_SET "metric_set"
#define TUNNEL_IMPORT_METRIC_OBSERVE "metric_observe"

#define TUNNEL_IMPORT(name) \
	__attribute__((import_module(TUNNEL_IMPORT_MODULE), import_name(name)))
#define TUNNEL_EXPORT(name) __attribute__((export_name(name)))

/*
 * Host functions. Pointers are offsets into the guest's memory: any C
 * pointer to a buffer of the module. A declared but unused import is not
 * linked in, so a version-1 guest may include this header as long as it
 * calls none of the v2 functions.
 */

/* Registers [ptr, ptr+cap) as the input buffer; only in tunnel_init. */
TUNNEL_IMPORT(TUNNEL_IMPORT_INPUT_BUFFER)
int32_t tunnel_input_buffer(void *ptr, int32_t cap);
/* The configuration (JSON text): written at buf when its length <= limit;
 * returns its length. */
TUNNEL_IMPORT(TUNNEL_IMPORT_CONFIG)
int32_t tunnel_config(void *buf, int32_t limit);
/* The reason tunnel_init rejects its configuration. */
TUNNEL_IMPORT(TUNNEL_IMPORT_CONFIG_ERROR)
void tunnel_config_error(const void *ptr, int32_t len);
/* A property (TUNNEL_INFO_*) of the current connection, (buf, limit). */
TUNNEL_IMPORT(TUNNEL_IMPORT_CONN_INFO)
int32_t tunnel_conn_info(int32_t key, void *buf, int32_t limit);
/* Passes len bytes onward in direction dir (copied before it returns). */
TUNNEL_IMPORT(TUNNEL_IMPORT_SEND)
int32_t tunnel_send(int32_t dir, const void *ptr, int32_t len);
/* Half-closes dir once what was sent is written. */
TUNNEL_IMPORT(TUNNEL_IMPORT_CLOSE_WRITE)
int32_t tunnel_close_write(int32_t dir);
/* Closes the connection once what was sent is written. */
TUNNEL_IMPORT(TUNNEL_IMPORT_CLOSE)
int32_t tunnel_close(void);
/* A line in the tunnel's log at level (TUNNEL_LOG_*). */
TUNNEL_IMPORT(TUNNEL_IMPORT_LOG)
void tunnel_log(int32_t level, const void *ptr, int32_t len);

/* ABI v2: tunnel_abi_version must return 2 to call these. */
TUNNEL_IMPORT(TUNNEL_IMPORT_NOW)
int64_t tunnel_now(void);
TUNNEL_IMPORT(TUNNEL_IMPORT_SET_TIMER)
int32_t tunnel_set_timer(int64_t conn, int64_t ns);
TUNNEL_IMPORT(TUNNEL_IMPORT_SET_TARGET)
int32_t tunnel_set_target(int64_t conn, const void *ptr, int32_t len);
TUNNEL_IMPORT(TUNNEL_IMPORT_SET_TAG)
int32_t tunnel_set_tag(int64_t conn, const void *kptr, int32_t klen, const void *vptr, int32_t vlen);
TUNNEL_IMPORT(TUNNEL_IMPORT_GET_TAG)
int32_t tunnel_get_tag(int64_t conn, const void *kptr, int32_t klen, void *buf, int32_t limit);
TUNNEL_IMPORT(TUNNEL_IMPORT_DEFER_END)
int32_t tunnel_defer_end(int64_t conn, int32_t dir);
/* pause = 1 stops reading dir's source (TCP then stops its sender), 0
 * reads it again. */
TUNNEL_IMPORT(TUNNEL_IMPORT_PAUSE_READ)
int32_t tunnel_pause_read(int64_t conn, int32_t dir, int32_t pause);

/* ABI v2, shared state of the plugin (all its instances). An empty value
 * is no value. state_get uses (buf, limit) and returns the length or
 * TUNNEL_STATUS_NOT_FOUND; state_cas returns 1 (swapped), 0 (not) or a
 * status; state_add writes the new value (int64, little-endian) at out. */
TUNNEL_IMPORT(TUNNEL_IMPORT_STATE_GET)
int32_t tunnel_state_get(const void *kptr, int32_t klen, void *buf, int32_t limit);
TUNNEL_IMPORT(TUNNEL_IMPORT_STATE_SET)
int32_t tunnel_state_set(const void *kptr, int32_t klen, const void *vptr, int32_t vlen);
TUNNEL_IMPORT(TUNNEL_IMPORT_STATE_DELETE)
int32_t tunnel_state_delete(const void *kptr, int32_t klen);
TUNNEL_IMPORT(TUNNEL_IMPORT_STATE_CAS)
int32_t tunnel_state_cas(const void *kptr, int32_t klen, const void *optr, int32_t olen,
                         const void *nptr, int32_t nlen);
TUNNEL_IMPORT(TUNNEL_IMPORT_STATE_ADD)
int32_t tunnel_state_add(const void *kptr, int32_t klen, int64_t delta, int64_t *out);

/* ABI v2, metrics. metric_define returns an id >= 0 (or a status); labels
 * are "name=value" pairs separated by '\n'; bounds is bcount doubles
 * (histograms only). */
TUNNEL_IMPORT(TUNNEL_IMPORT_METRIC_DEFINE)
int32_t tunnel_metric_define(int32_t kind, const void *nptr, int32_t nlen, const void *lptr,
                             int32_t llen, const double *bounds, int32_t bcount);
TUNNEL_IMPORT(TUNNEL_IMPORT_METRIC_ADD)
int32_t tunnel_metric_add(int32_t id, int64_t delta);
TUNNEL_IMPORT(TUNNEL_IMPORT_METRIC_SET)
int32_t tunnel_metric_set(int32_t id, int64_t value);
TUNNEL_IMPORT(TUNNEL_IMPORT_METRIC_OBSERVE)
int32_t tunnel_metric_observe(int32_t id, double value);

/*
 * Guest exports: define the ones your plugin needs (tunnel_abi_version,
 * tunnel_init and tunnel_on_data are required; the others are optional).
 * The memory is exported by the linker.
 */
TUNNEL_EXPORT(TUNNEL_EXPORT_ABI_VERSION) int32_t tunnel_abi_version(void);
TUNNEL_EXPORT(TUNNEL_EXPORT_INIT) int32_t tunnel_init(void);
TUNNEL_EXPORT(TUNNEL_EXPORT_ON_OPEN) int32_t tunnel_on_open(int64_t conn);
TUNNEL_EXPORT(TUNNEL_EXPORT_ON_DATA)
int32_t tunnel_on_data(int64_t conn, int32_t dir, int32_t len, int32_t end);
TUNNEL_EXPORT(TUNNEL_EXPORT_ON_CLOSE) void tunnel_on_close(int64_t conn);
TUNNEL_EXPORT(TUNNEL_EXPORT_ON_TIMER) int32_t tunnel_on_timer(int64_t conn);

#ifdef __cplusplus
}
#endif

#endif /* TUNNEL_H */
