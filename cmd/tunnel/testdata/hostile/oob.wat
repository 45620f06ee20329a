;; oob: tunnel_on_data passes send a pointer far outside its memory.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (drop (call $send (local.get $dir) (i32.const 0x7fff0000) (i32.const 16)))
    (i32.const 0)))
