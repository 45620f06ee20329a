;; hold: assembles lines. It holds the presented bytes (ActionHold, logging
;; "holding") until they contain a newline, then sends them wrapped in
;; brackets and drops the original ("[hello\n]"). Its input buffer is 16
;; bytes, so a longer line makes it hold a full buffer: an ABI violation.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "[]holding")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 16)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (local $i i32)
    (block $found
      (loop $scan
        (br_if $found (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 10))
          (then
            (drop (call $send (local.get $dir) (i32.const 8192) (i32.const 1)))
            (drop (call $send (local.get $dir) (i32.const 0) (local.get $len)))
            (drop (call $send (local.get $dir) (i32.const 8193) (i32.const 1)))
            (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (call $log (i32.const 0) (i32.const 8194) (i32.const 7))
    (i32.const 2)))
