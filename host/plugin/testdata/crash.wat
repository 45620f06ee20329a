;; crash: prefixes every chunk with "+" (send "+", then forward), and traps
;; when a chunk starts with "!". It counts its open connections in on_open /
;; on_close.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "+")
  (global $open (mut i32) (i32.const 0))
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_open") (param $conn i64) (result i32)
    (global.set $open (i32.add (global.get $open) (i32.const 1)))
    (i32.const 0))
  (func (export "tunnel_on_close") (param $conn i64)
    (global.set $open (i32.sub (global.get $open) (i32.const 1))))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.eqz (local.get $len)) (then (return (i32.const 0))))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 33)) (then unreachable))
    (drop (call $send (local.get $dir) (i32.const 8192) (i32.const 1)))
    (i32.const 0)))
