;; answer: drops what the client sends, answers it "DENIED\n" (send toward
;; the reverse direction) and closes the connection.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "close" (func $close (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "DENIED\n")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.eqz (local.get $dir))
      (then
        (drop (call $send (i32.const 1) (i32.const 8192) (i32.const 7)))
        (drop (call $close))
        (return (i32.const 1))))
    (i32.const 0)))
