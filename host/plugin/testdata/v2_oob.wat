;; v2_oob (ABI v2): on the first chunk, calls the host function chosen by
;; the first byte with a range outside its memory: 't' set_tag, 'g' get_tag
;; (key out of bounds), 'b' get_tag (buffer out of bounds), 's' set_target.
;; Each must trap the call (an ABI violation), never panic the host.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "set_tag" (func $set_tag (param i64 i32 i32 i32 i32) (result i32)))
  (import "tunnel" "get_tag" (func $get_tag (param i64 i32 i32 i32 i32) (result i32)))
  (import "tunnel" "set_target" (func $set_target (param i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "k")
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (local $c i32)
    (if (i32.eqz (local.get $len)) (then (return (i32.const 0))))
    (local.set $c (i32.load8_u (i32.const 0)))
    (if (i32.eq (local.get $c) (i32.const 116)) ;; t
      (then (drop (call $set_tag (local.get $conn) (i32.const 8192) (i32.const 1) (i32.const 65530) (i32.const 100)))))
    (if (i32.eq (local.get $c) (i32.const 103)) ;; g
      (then (drop (call $get_tag (local.get $conn) (i32.const -16) (i32.const 32) (i32.const 0) (i32.const 0)))))
    (if (i32.eq (local.get $c) (i32.const 98)) ;; b: set the tag, then read it into a buffer past the end
      (then
        (drop (call $set_tag (local.get $conn) (i32.const 8192) (i32.const 1) (i32.const 8192) (i32.const 1)))
        (drop (call $get_tag (local.get $conn) (i32.const 8192) (i32.const 1) (i32.const 65536) (i32.const 16)))))
    (if (i32.eq (local.get $c) (i32.const 115)) ;; s
      (then (drop (call $set_target (local.get $conn) (i32.const 65000) (i32.const 1000)))))
    (i32.const 0)))
