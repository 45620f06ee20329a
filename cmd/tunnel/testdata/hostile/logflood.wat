;; logflood: every tunnel_on_data call logs "flood" at WARN 1,000 times, then
;; forwards the chunk.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "flood")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (local $i i32)
    (loop $again
      (call $log (i32.const 4) (i32.const 8192) (i32.const 5))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
    (i32.const 0)))
