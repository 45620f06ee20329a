;; grow: tunnel_on_data grows its memory one page at a time without end; when
;; memory.grow fails it sends the page count it reached (4 bytes, little
;; endian) back toward the sender and traps, as a Go guest panics when it runs
;; out of memory.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (i32.store (i32.const 4096) (memory.size))
    (drop (call $send (i32.xor (local.get $dir) (i32.const 1)) (i32.const 4096) (i32.const 4)))
    unreachable))
