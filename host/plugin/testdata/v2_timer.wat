;; v2_timer (ABI v2): delays what the client sends. tunnel_on_data keeps the
;; chunk in its memory, tags the connection (seen=yes), drops it and arms
;; the timer for 20 ms; tunnel_on_timer sends the kept bytes on, prefixed by
;; the value of the tag "seen" (get_tag) and "+" when now() moved forward.
;; A second chunk before the timer fires replaces the pending one (one timer
;; per connection: re-arming replaces).
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "now" (func $now (result i64)))
  (import "tunnel" "set_timer" (func $set_timer (param i64 i64) (result i32)))
  (import "tunnel" "set_tag" (func $set_tag (param i64 i32 i32 i32 i32) (result i32)))
  (import "tunnel" "get_tag" (func $get_tag (param i64 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0..4096 input buffer; 8192 "seen"; 8200 "yes"; 8208 "+";
  ;; 16384 kept length; 16392 armed-at time; 16400 tag value; 20000.. kept bytes
  (data (i32.const 8192) "seen")
  (data (i32.const 8200) "yes")
  (data (i32.const 8208) "+")
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.or (local.get $dir) (local.get $end)) (then (return (i32.const 0))))
    (memory.copy (i32.const 20000) (i32.const 0) (local.get $len))
    (i32.store (i32.const 16384) (local.get $len))
    (i64.store (i32.const 16392) (call $now))
    (drop (call $set_tag (local.get $conn) (i32.const 8192) (i32.const 4) (i32.const 8200) (i32.const 3)))
    (drop (call $set_timer (local.get $conn) (i64.const 20000000)))
    (i32.const 1))
  (func (export "tunnel_on_timer") (param $conn i64) (result i32)
    (local $n i32)
    (local.set $n (call $get_tag (local.get $conn) (i32.const 8192) (i32.const 4) (i32.const 16400) (i32.const 16)))
    (if (i32.gt_s (local.get $n) (i32.const 0))
      (then (drop (call $send (i32.const 0) (i32.const 16400) (local.get $n)))))
    (if (i64.ge_s (i64.sub (call $now) (i64.load (i32.const 16392))) (i64.const 20000000))
      (then (drop (call $send (i32.const 0) (i32.const 8208) (i32.const 1)))))
    (drop (call $send (i32.const 0) (i32.const 20000) (i32.load (i32.const 16384))))
    (i32.const 0)))
