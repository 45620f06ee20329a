;; v2_bad_on_timer: imports set_timer and exports tunnel_on_timer with the
;; wrong signature (no result): a load error that names the signature only.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "set_timer" (func $set_timer (param i64 i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_timer") (param i64))
  (func (export "tunnel_on_data") (param i64 i32 i32 i32) (result i32) (i32.const 0)))
