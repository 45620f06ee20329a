;; stamp: a test guest for internal/config. Before every non-empty chunk of
;; the client -> server stream it sends its config bytes (the JSON the HCL
;; config attribute became), then forwards the chunk. It rejects a config
;; that contains "!" and one longer than 1 KiB, so tests can check how config
;; rejections are reported. Regenerate stamp.wasm with `make` (wabt).
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "config" (func $config (param i32 i32) (result i32)))
  (import "tunnel" "config_error" (func $config_error (param i32 i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..1024: config; 2048: messages; 4096..36864: input buffer.
  (data (i32.const 2048) "stamp: config must not contain \22!\22")
  (data (i32.const 2112) "stamp: config longer than 1024 bytes")
  (global $cfglen (mut i32) (i32.const 0))

  (func (export "tunnel_abi_version") (result i32) (i32.const 1))

  (func (export "tunnel_init") (result i32)
    (local $n i32) (local $i i32)
    (drop (call $input_buffer (i32.const 4096) (i32.const 32768)))
    (local.set $n (call $config (i32.const 0) (i32.const 1024)))
    (if (i32.gt_u (local.get $n) (i32.const 1024))
      (then
        (call $config_error (i32.const 2112) (i32.const 36))
        (return (i32.const 1))))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 33))
          (then
            (call $config_error (i32.const 2048) (i32.const 34))
            (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (global.set $cfglen (local.get $n))
    (i32.const 0))

  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.and (i32.eqz (local.get $dir)) (i32.ne (local.get $len) (i32.const 0)))
      (then (drop (call $send (i32.const 0) (i32.const 0) (global.get $cfglen)))))
    (i32.const 0))
)
