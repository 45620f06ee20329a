;; v2_defer (ABI v2): delays the client's bytes by 20 ms with set_timer and
;; keeps the client's half-close behind them with defer_end, then ends the
;; direction from tunnel_on_timer with close_write. One connection at a
;; time. defer_end is checked to be refused (StatusNotAllowed, else the
;; guest traps) with end = 0, for the other direction and in
;; tunnel_on_timer.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "close_write" (func $close_write (param i32) (result i32)))
  (import "tunnel" "set_timer" (func $set_timer (param i64 i64) (result i32)))
  (import "tunnel" "defer_end" (func $defer_end (param i64 i32) (result i32)))
  (memory (export "memory") 4)
  (global $held (mut i32) (i32.const 0))  ;; bytes held at 65536
  (global $ended (mut i32) (i32.const 0))
  (func $expect (param $got i32) (param $want i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then unreachable)))
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 32768)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (local.get $dir) (then
      (if (local.get $end) (then
        (call $expect (call $defer_end (local.get $conn) (i32.const 0)) (i32.const -3))))
      (return (i32.const 0))))
    (memory.copy (i32.add (i32.const 65536) (global.get $held)) (i32.const 0) (local.get $len))
    (global.set $held (i32.add (global.get $held) (local.get $len)))
    (if (local.get $end)
      (then
        (call $expect (call $defer_end (local.get $conn) (i32.const 1)) (i32.const -3))
        (call $expect (call $defer_end (local.get $conn) (i32.const 2)) (i32.const -1))
        (call $expect (call $defer_end (i64.add (local.get $conn) (i64.const 1)) (i32.const 0)) (i32.const -1))
        (call $expect (call $defer_end (local.get $conn) (i32.const 0)) (i32.const 0))
        (global.set $ended (i32.const 1)))
      (else
        (call $expect (call $defer_end (local.get $conn) (i32.const 0)) (i32.const -3))))
    (drop (call $set_timer (local.get $conn) (i64.const 20000000)))
    (i32.const 1))
  (func (export "tunnel_on_timer") (param $conn i64) (result i32)
    (call $expect (call $defer_end (local.get $conn) (i32.const 0)) (i32.const -3))
    (call $expect (call $send (i32.const 0) (i32.const 65536) (global.get $held)) (i32.const 0))
    (global.set $held (i32.const 0))
    (if (global.get $ended) (then
      (call $expect (call $close_write (i32.const 0)) (i32.const 0))))
    (i32.const 0)))
