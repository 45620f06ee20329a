;; statuses: records the status of host calls made where they are not
;; allowed or with bad arguments, as one letter each ('d' + status, so
;; 'a' = -3 NotAllowed, 'b' = -2 Closed, 'c' = -1 BadArgument, 'd' = OK,
;; 'h' = a length of 4), and logs the 12 letters at the first chunk.
;; Meant to be attached to the client -> server direction only.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "close_write" (func $close_write (param i32) (result i32)))
  (import "tunnel" "close" (func $close (result i32)))
  (import "tunnel" "conn_info" (func $conn_info (param i32 i32 i32) (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func $rec (param $i i32) (param $status i32)
    (i32.store8 (i32.add (i32.const 8192) (local.get $i)) (i32.add (local.get $status) (i32.const 100))))
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (call $rec (i32.const 0) (call $send (i32.const 0) (i32.const 0) (i32.const 1)))   ;; a: not in a connection
    (call $rec (i32.const 1) (call $close_write (i32.const 0)))                       ;; a
    (call $rec (i32.const 2) (call $close))                                           ;; a
    (call $rec (i32.const 3) (call $conn_info (i32.const 0) (i32.const 0) (i32.const 0))) ;; a
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.eqz (local.get $len)) (then (return (i32.const 0))))
    (call $rec (i32.const 4) (call $input_buffer (i32.const 0) (i32.const 4096)))     ;; a: only during init
    (call $rec (i32.const 5) (call $send (i32.const 5) (i32.const 0) (i32.const 1)))  ;; c: no direction 5
    (call $rec (i32.const 6) (call $conn_info (i32.const 99) (i32.const 0) (i32.const 0))) ;; c: no key 99
    (call $rec (i32.const 7) (call $send (i32.const 1) (i32.const 0) (i32.const 1)))  ;; a: spliced direction
    (call $rec (i32.const 8) (call $close_write (i32.const 0)))                       ;; d
    (call $rec (i32.const 9) (call $send (i32.const 0) (i32.const 0) (i32.const 1)))  ;; b: half-closed
    (call $rec (i32.const 10) (call $conn_info (i32.const 0) (i32.const 0) (i32.const 0))) ;; h: len("test")
    (call $rec (i32.const 11) (call $close_write (i32.const 7)))                      ;; c
    (call $log (i32.const 0) (i32.const 8192) (i32.const 12))
    (i32.const 1)))
