;; bomb: tunnel_on_data grows its memory a page at a time and writes into
;; every 4 KiB of each new page (so the pages are really taken, not only
;; reserved) until memory.grow fails at the memory limit; then it traps, as
;; a guest that runs out of memory does.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (local $p i32) (local $e i32)
    (block $full
      (loop $more
        (local.set $p (memory.grow (i32.const 1)))
        (br_if $full (i32.eq (local.get $p) (i32.const -1)))
        (local.set $p (i32.mul (local.get $p) (i32.const 65536)))
        (local.set $e (i32.add (local.get $p) (i32.const 65536)))
        (loop $touch
          (i32.store8 (local.get $p) (i32.const 1))
          (local.set $p (i32.add (local.get $p) (i32.const 4096)))
          (br_if $touch (i32.lt_u (local.get $p) (local.get $e))))
        (br $more)))
    unreachable))
