;; v2_pause (ABI v2): a client chunk that starts with "p" pauses the reads
;; of the client (pause_read) and is forwarded; one that starts with "s"
;; spins until the call's time limit; others are forwarded. pause_read is
;; checked to return StatusBadArgument (else the guest traps) for a bad
;; direction, a bad pause flag and another connection.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "pause_read" (func $pause_read (param i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $expect (param $got i32) (param $want i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then unreachable)))
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 32768)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.or (local.get $dir) (i32.eqz (local.get $len))) (then (return (i32.const 0))))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 0x73)) ;; "s"
      (then (loop $spin (br $spin))))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 0x70)) ;; "p"
      (then
        (call $expect (call $pause_read (local.get $conn) (i32.const 2) (i32.const 1)) (i32.const -1))
        (call $expect (call $pause_read (local.get $conn) (i32.const 0) (i32.const 2)) (i32.const -1))
        (call $expect (call $pause_read (i64.add (local.get $conn) (i64.const 1)) (i32.const 0) (i32.const 1)) (i32.const -1))
        (call $expect (call $pause_read (local.get $conn) (i32.const 0) (i32.const 1)) (i32.const 0))))
    (i32.const 0)))
