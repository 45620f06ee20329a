// The tunnel plugin ABI (sdk/ABI.md) for AssemblyScript: the host
// functions of the import module "tunnel", the constants, and small wrappers
// that take strings. No packages besides the compiler: copy this file next
// to your plugin and import from "./tunnel".

export const DIR_CLIENT_TO_SERVER: i32 = 0;
export const DIR_SERVER_TO_CLIENT: i32 = 1;

export const ACTION_FORWARD: i32 = 0;
export const ACTION_DROP: i32 = 1;
export const ACTION_HOLD: i32 = 2;

export const OK: i32 = 0;
export const REJECT: i32 = 1;

export const STATUS_OK: i32 = 0;
export const STATUS_BAD_ARGUMENT: i32 = -1;
export const STATUS_CLOSED: i32 = -2;
export const STATUS_NOT_ALLOWED: i32 = -3;

export const LOG_DEBUG: i32 = -4;
export const LOG_INFO: i32 = 0;
export const LOG_WARN: i32 = 4;
export const LOG_ERROR: i32 = 8;

export const INFO_ROUTE: i32 = 0;
export const INFO_CLIENT: i32 = 1;
export const INFO_TARGET: i32 = 2;
export const INFO_LISTEN: i32 = 3;

// The host functions of ABI version 1. Pointers are offsets into this
// module's memory (usize), lengths are i32.
@external("tunnel", "input_buffer")
export declare function input_buffer(ptr: usize, cap: i32): i32;
@external("tunnel", "config")
export declare function config(buf: usize, limit: i32): i32;
@external("tunnel", "config_error")
export declare function config_error(ptr: usize, len: i32): void;
@external("tunnel", "conn_info")
export declare function conn_info(key: i32, buf: usize, limit: i32): i32;
@external("tunnel", "send")
export declare function send(dir: i32, ptr: usize, len: i32): i32;
@external("tunnel", "close_write")
export declare function close_write(dir: i32): i32;
@external("tunnel", "close")
export declare function close(): i32;
@external("tunnel", "log")
export declare function log(level: i32, ptr: usize, len: i32): void;

/** The plugin's configuration (JSON text), "" when none is set. */
export function configText(): string {
  const n = config(0, 0); // the length alone
  if (n <= 0) return "";
  const b = new ArrayBuffer(n);
  const got = config(changetype<usize>(b), n);
  return String.UTF8.decode(got == n ? b : b.slice(0, 0));
}

/** Rejects the configuration with msg (then return REJECT from tunnel_init). */
export function configError(msg: string): void {
  const b = String.UTF8.encode(msg);
  config_error(changetype<usize>(b), b.byteLength);
}

/** Writes msg to the tunnel's log at level (LOG_*). */
export function logText(level: i32, msg: string): void {
  const b = String.UTF8.encode(msg);
  log(level, changetype<usize>(b), b.byteLength);
}

/**
 * The module's abort (asc --use abort=tunnel/abort): a failed assertion or
 * an out-of-bounds array access logs where it happened and traps. Without it
 * AssemblyScript imports "env" "abort", which the tunnel does not provide.
 */
export function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  const m = message === null ? "abort" : message;
  const f = file === null ? "?" : file;
  logText(LOG_ERROR, m + " at " + f + ":" + line.toString() + ":" + column.toString());
  unreachable();
}
