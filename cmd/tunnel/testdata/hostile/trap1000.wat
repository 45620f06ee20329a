;; trap1000: forwards every chunk, and traps on the 1000th client -> server
;; chunk an instance sees.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $chunks (mut i32) (i32.const 0))
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.or (local.get $dir) (i32.eqz (local.get $len)))
      (then (return (i32.const 0))))
    (global.set $chunks (i32.add (global.get $chunks) (i32.const 1)))
    (if (i32.eq (global.get $chunks) (i32.const 1000))
      (then unreachable))
    (i32.const 0)))
