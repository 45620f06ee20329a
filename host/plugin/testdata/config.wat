;; config: reads its configuration; rejects an empty one with
;; config_error("config: the configuration must not be empty"). On open it
;; answers the client with its config and the four conn_info values, one
;; per line, and refuses the connection (Reject) when the config starts with
;; "r"; then it forwards everything. On close it logs "closed".
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "config" (func $config (param i32 i32) (result i32)))
  (import "tunnel" "config_error" (func $config_error (param i32 i32)))
  (import "tunnel" "conn_info" (func $conn_info (param i32 i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "config: the configuration must not be empty")
  (data (i32.const 8256) "\n")
  (data (i32.const 8260) "closed")
  (global $cfglen (mut i32) (i32.const 0))
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    ;; ask for the length alone, then read it into [12288, 12288+1024)
    (global.set $cfglen (call $config (i32.const 0) (i32.const 0)))
    (if (i32.eqz (global.get $cfglen))
      (then
        (call $config_error (i32.const 8192) (i32.const 43))
        (return (i32.const 1))))
    (drop (call $config (i32.const 12288) (i32.const 1024)))
    (i32.const 0))
  (func $line (param $p i32) (param $n i32)
    (drop (call $send (i32.const 1) (local.get $p) (local.get $n)))
    (drop (call $send (i32.const 1) (i32.const 8256) (i32.const 1))))
  (func (export "tunnel_on_open") (param $conn i64) (result i32)
    (local $k i32)
    (call $line (i32.const 12288) (global.get $cfglen))
    (loop $keys
      (call $line (i32.const 16384) (call $conn_info (local.get $k) (i32.const 16384) (i32.const 256)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $keys (i32.lt_u (local.get $k) (i32.const 4))))
    (i32.eq (i32.load8_u (i32.const 12288)) (i32.const 114)))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (i32.const 0))
  (func (export "tunnel_on_close") (param $conn i64)
    (call $log (i32.const 0) (i32.const 8260) (i32.const 6))))
