//! rust-upper: a tunnel plugin in Rust that upper-cases the ASCII letters
//! the client sends; the server's bytes pass untouched. No configuration.
//! Build: make (Debian rustc + libstd-rust-dev-wasm32, target wasm32-wasi).
mod tunnel;

#[no_mangle]
pub extern "C" fn tunnel_abi_version() -> i32 {
    1
}

#[no_mangle]
pub extern "C" fn tunnel_init() -> i32 {
    if !tunnel::config().iter().all(|c| c.is_ascii_whitespace()) {
        tunnel::config_error("rust-upper: takes no configuration");
        return tunnel::REJECT;
    }
    match tunnel::register_input() {
        Ok(()) => tunnel::OK,
        Err(_) => tunnel::REJECT,
    }
}

#[no_mangle]
pub extern "C" fn tunnel_on_data(_conn: i64, dir: i32, len: i32, _end: i32) -> i32 {
    if dir != tunnel::DIR_CLIENT_TO_SERVER {
        return tunnel::ACTION_FORWARD;
    }
    let b = tunnel::input(len);
    if !b.iter().any(u8::is_ascii_lowercase) {
        return tunnel::ACTION_FORWARD;
    }
    // FORWARD would pass the host's copy of the chunk, not these edits: a
    // rewrite is send + DROP.
    b.make_ascii_uppercase();
    if tunnel::send(dir, b).is_err() {
        tunnel::log(tunnel::LOG_WARN, "rust-upper: send refused");
    }
    tunnel::ACTION_DROP
}
