;; v2_bench (ABI v2): tunnel_on_data(conn, dir, len, end) calls one v2 host
;; function len times (dir 0: now; dir 1: get_tag "k" into a 16-byte
;; buffer; dir 0 with end = 1: set_timer; dir 1 with end = 1: set_tag "k"
;; to "v"), for the per-call benchmarks of host/internal/wasm.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "now" (func $now (result i64)))
  (import "tunnel" "set_timer" (func $set_timer (param i64 i64) (result i32)))
  (import "tunnel" "set_tag" (func $set_tag (param i64 i32 i32 i32 i32) (result i32)))
  (import "tunnel" "get_tag" (func $get_tag (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "kv")
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_timer") (param i64) (result i32) (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (if (i32.eqz (local.get $end))
          (then
            (if (i32.eqz (local.get $dir))
              (then (drop (call $now)))
              (else (drop (call $get_tag (local.get $conn) (i32.const 8192) (i32.const 1) (i32.const 9000) (i32.const 16))))))
          (else
            (if (i32.eqz (local.get $dir))
              (then (drop (call $set_timer (local.get $conn) (i64.const 1000))))
              (else (drop (call $set_tag (local.get $conn) (i32.const 8192) (i32.const 1) (i32.const 8193) (i32.const 1)))))))
        (br $next)))
    (i32.const 1)))
