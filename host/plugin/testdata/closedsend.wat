;; closedsend: what becomes of bytes toward a direction the guest closed.
;; A client chunk starting with "w" sends "BYE\n" to the client, half-closes
;; server -> client and is forwarded; the server's answers are then
;; FORWARDed into the closed direction (dropped). A client chunk starting
;; with "c" closes the connection, then sends "late" to the client and logs
;; "send refused" when that returns StatusClosed (-2); it is dropped. A
;; client chunk starting with "f" sends "BYE\n" to the client, closes the
;; connection and returns FORWARD: the chunk is dropped, as the deny
;; plugin of a C or WAT author returns it. Other chunks are forwarded.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "close_write" (func $close_write (param i32) (result i32)))
  (import "tunnel" "close" (func $close (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "BYE\n")
  (data (i32.const 8200) "late")
  (data (i32.const 8208) "send refused")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (if (i32.or (local.get $dir) (i32.eqz (local.get $len))) (then (return (i32.const 0))))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 119)) ;; "w"
      (then
        (drop (call $send (i32.const 1) (i32.const 8192) (i32.const 4)))
        (drop (call $close_write (i32.const 1)))
        (return (i32.const 0))))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 99)) ;; "c"
      (then
        (drop (call $close))
        (if (i32.eq (call $send (i32.const 1) (i32.const 8200) (i32.const 4)) (i32.const -2))
          (then (call $log (i32.const 0) (i32.const 8208) (i32.const 12))))
        (return (i32.const 1))))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 102)) ;; "f"
      (then
        (drop (call $send (i32.const 1) (i32.const 8192) (i32.const 4)))
        (drop (call $close))
        (return (i32.const 0))))
    (i32.const 0)))
