;; stdout: writes "hello from the guest\n" to WASI stdout during init, then
;; forwards everything.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "hello from the guest\n")
  (data (i32.const 8256) "\00\20\00\00\15\00\00\00") ;; iovec {8192, 21}
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $fd_write (i32.const 1) (i32.const 8256) (i32.const 1) (i32.const 8272)))
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (i32.const 0)))
