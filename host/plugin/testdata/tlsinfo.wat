;; tlsinfo: on open it answers the client with conn_info keys 4 to 9 (the
;; TLS session: server name, ALPN, version, peer subject, peer names, peer
;; verified), one per line, then key 10 (no such key: its status, -1); then
;; it forwards everything.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "conn_info" (func $conn_info (param i32 i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8256) "\n")
  (data (i32.const 8260) "-1")
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func $line (param $p i32) (param $n i32)
    (drop (call $send (i32.const 1) (local.get $p) (local.get $n)))
    (drop (call $send (i32.const 1) (i32.const 8256) (i32.const 1))))
  (func (export "tunnel_on_open") (param $conn i64) (result i32)
    (local $k i32)
    (local.set $k (i32.const 4))
    (loop $keys
      (call $line (i32.const 16384) (call $conn_info (local.get $k) (i32.const 16384) (i32.const 256)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $keys (i32.lt_u (local.get $k) (i32.const 10))))
    (if (i32.eq (call $conn_info (i32.const 10) (i32.const 16384) (i32.const 256)) (i32.const -1))
      (then (call $line (i32.const 8260) (i32.const 2))))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (i32.const 0)))
