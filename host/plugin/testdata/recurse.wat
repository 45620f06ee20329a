;; recurse: tunnel_on_data logs "spinning" and then calls a function that
;; calls itself twice, 40 deep: 2^40 calls, no loop, and never deeper than
;; 41 frames, so no stack overflow ends it either.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "spinning")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func $fan (param $n i32)
    (if (local.get $n)
      (then
        (call $fan (i32.sub (local.get $n) (i32.const 1)))
        (call $fan (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (call $log (i32.const 0) (i32.const 8192) (i32.const 8))
    (call $fan (i32.const 40))
    (i32.const 0)))
