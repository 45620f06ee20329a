;; sendhold: send and HOLD in one call. While fewer than 4 bytes are
;; presented it sends "<" onward and returns HOLD; then it returns
;; FORWARD. "ab" then "cd" reach the server as "<" (at once, while "ab"
;; is held), then "abcd": a HOLD call's sends go on immediately, the held
;; bytes with the call that forwards them.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "<")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.ge_u (local.get $len) (i32.const 4)) (then (return (i32.const 0))))
    (drop (call $send (local.get $dir) (i32.const 8192) (i32.const 1)))
    (i32.const 2)))
