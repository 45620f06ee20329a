;; v2_target (ABI v2): every client chunk is an address for set_target; the
;; guest drops it and answers the client one byte, '0' + -status: '0' OK,
;; '1' StatusBadArgument, '5' StatusNoLateDial, '6' StatusAlreadySet.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "set_target" (func $set_target (param i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.or (local.get $dir) (i32.eqz (local.get $len))) (then (return (i32.const 0))))
    (i32.store8 (i32.const 8192)
      (i32.sub (i32.const 48) (call $set_target (local.get $conn) (i32.const 0) (local.get $len))))
    (drop (call $send (i32.const 1) (i32.const 8192) (i32.const 1)))
    (i32.const 1)))
