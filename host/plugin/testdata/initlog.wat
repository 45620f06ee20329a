;; initlog: logs "hello from _initialize" in the WASI reactor's
;; _initialize and "hello from the handshake" in tunnel_abi_version, as a
;; C constructor or a Go init that prints would, then forwards everything.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "hello from _initialize")
  (data (i32.const 8256) "hello from the handshake")
  (func (export "_initialize")
    (call $log (i32.const 0) (i32.const 8192) (i32.const 22)))
  (func (export "tunnel_abi_version") (result i32)
    (call $log (i32.const 0) (i32.const 8256) (i32.const 24))
    (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (i32.const 0)))
