//! A small safe wrapper over the tunnel plugin ABI (sdk/ABI.md): the host
//! functions as safe Rust functions, the constants, and the input buffer.
//! No crates: copy this file next to your plugin and `mod tunnel;`.
#![allow(dead_code)]

pub const DIR_CLIENT_TO_SERVER: i32 = 0;
pub const DIR_SERVER_TO_CLIENT: i32 = 1;

pub const ACTION_FORWARD: i32 = 0;
pub const ACTION_DROP: i32 = 1;
pub const ACTION_HOLD: i32 = 2;

pub const OK: i32 = 0;
pub const REJECT: i32 = 1;

pub const LOG_DEBUG: i32 = -4;
pub const LOG_INFO: i32 = 0;
pub const LOG_WARN: i32 = 4;
pub const LOG_ERROR: i32 = 8;

pub const INFO_ROUTE: i32 = 0;
pub const INFO_CLIENT: i32 = 1;
pub const INFO_TARGET: i32 = 2;
pub const INFO_LISTEN: i32 = 3;

/// A negative status from a host function (`StatusClosed` is -2, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub i32);

mod raw {
    #[link(wasm_import_module = "tunnel")]
    extern "C" {
        pub fn input_buffer(ptr: *mut u8, cap: i32) -> i32;
        pub fn config(buf: *mut u8, limit: i32) -> i32;
        pub fn config_error(ptr: *const u8, len: i32);
        pub fn conn_info(key: i32, buf: *mut u8, limit: i32) -> i32;
        pub fn send(dir: i32, ptr: *const u8, len: i32) -> i32;
        pub fn close_write(dir: i32) -> i32;
        pub fn close() -> i32;
        pub fn log(level: i32, ptr: *const u8, len: i32);
    }
}

fn status(r: i32) -> Result<i32, Status> {
    if r < 0 {
        Err(Status(r))
    } else {
        Ok(r)
    }
}

/// The capacity of the input buffer.
pub const INPUT_CAP: usize = 16 << 10;

static mut INPUT: [u8; INPUT_CAP] = [0; INPUT_CAP];

/// Registers the input buffer; call it from `tunnel_init`.
pub fn register_input() -> Result<(), Status> {
    // SAFETY: the buffer is static; the host writes into it only during
    // tunnel_on_data, when no Rust reference to it is alive outside input().
    status(unsafe { raw::input_buffer(INPUT.as_mut_ptr(), INPUT_CAP as i32) }).map(|_| ())
}

/// The chunk the host presented to `tunnel_on_data`, `len` bytes. Use it
/// only within that call (a guest is never called concurrently).
pub fn input(len: i32) -> &'static mut [u8] {
    let len = (len.max(0) as usize).min(INPUT_CAP);
    // SAFETY: single-threaded guest, one call at a time; the slice is only
    // used during the call that received len.
    unsafe { &mut INPUT[..len] }
}

/// The plugin's configuration (JSON text; empty when none).
pub fn config() -> Vec<u8> {
    let n = unsafe { raw::config(core::ptr::null_mut(), 0) }.max(0) as usize;
    let mut b = vec![0u8; n];
    let got = unsafe { raw::config(b.as_mut_ptr(), n as i32) };
    b.truncate(got.max(0) as usize);
    b
}

/// The reason tunnel_init rejects its configuration.
pub fn config_error(msg: &str) {
    unsafe { raw::config_error(msg.as_ptr(), msg.len() as i32) }
}

/// A property of the current connection (`INFO_*`).
pub fn conn_info(key: i32) -> Result<Vec<u8>, Status> {
    let n = status(unsafe { raw::conn_info(key, core::ptr::null_mut(), 0) })? as usize;
    let mut b = vec![0u8; n];
    let got = status(unsafe { raw::conn_info(key, b.as_mut_ptr(), n as i32) })? as usize;
    b.truncate(got.min(n));
    Ok(b)
}

/// Passes `b` onward in direction `dir` (the host copies it).
pub fn send(dir: i32, b: &[u8]) -> Result<(), Status> {
    status(unsafe { raw::send(dir, b.as_ptr(), b.len() as i32) }).map(|_| ())
}

/// Half-closes `dir` once what was sent is written.
pub fn close_write(dir: i32) -> Result<(), Status> {
    status(unsafe { raw::close_write(dir) }).map(|_| ())
}

/// Closes the connection once what was sent is written.
pub fn close() -> Result<(), Status> {
    status(unsafe { raw::close() }).map(|_| ())
}

/// A line in the tunnel's log.
pub fn log(level: i32, msg: &str) {
    unsafe { raw::log(level, msg.as_ptr(), msg.len() as i32) }
}
