;; big: a test guest for internal/config whose initial memory (2 MiB) exceeds
;; a 1 MiB memory_limit, so instantiating it fails.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 32)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 32768)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param i64 i32 i32 i32) (result i32) (i32.const 0))
)
