;; v1_timer_export: a version-1 guest that happens to export a function
;; named tunnel_on_timer (which traps). It behaves as every v1 guest did:
;; it forwards, and the export is never called.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param i64 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "tunnel_on_timer") (param i64) (result i32) unreachable))
