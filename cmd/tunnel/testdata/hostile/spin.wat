;; spin: tunnel_on_data computes without end, until call_timeout cuts it off.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
