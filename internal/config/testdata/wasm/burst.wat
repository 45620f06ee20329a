;; burst: a test guest for internal/config. For every non-empty chunk of the
;; client -> server stream it sends 96 KiB of zero bytes toward the server
;; in one call, instead of the chunk: more than an output budget
;; (max_output) of 64 KiB allows, less than the default 4 MiB. Regenerate
;; burst.wasm with `make` (wabt).
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  ;; 0..98304: the zeroes sent; 98304..131072: input buffer.
  (memory (export "memory") 2)

  (func (export "tunnel_abi_version") (result i32) (i32.const 1))

  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 98304) (i32.const 32768)))
    (i32.const 0))

  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.or (local.get $dir) (i32.eqz (local.get $len)))
      (then (return (i32.const 0))))
    (drop (call $send (i32.const 0) (i32.const 0) (i32.const 98304)))
    (i32.const 1))
)
