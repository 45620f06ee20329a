;; threads: a guest with a shared memory and an atomic instruction
;; (the threads proposal), which the host does not enable: a load error.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 1 1 shared)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param i64 i32 i32 i32) (result i32)
    (drop (i32.atomic.rmw.add (i32.const 8192) (i32.const 1)))
    (i32.const 0)))
