;; amp: sends every client -> server chunk 100 times toward the server and
;; drops the original (x100 amplification); server -> client chunks pass.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (local $i i32)
    (if (i32.or (local.get $dir) (i32.eqz (local.get $len)))
      (then (return (i32.const 0))))
    (loop $again
      (drop (call $send (i32.const 0) (i32.const 0) (local.get $len)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 100))))
    (i32.const 1)))
