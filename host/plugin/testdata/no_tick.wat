;; no_tick: imports nothing, so the host's instrumentation has no
;; input_buffer import to tick through, and its tunnel_init makes 2^40
;; calls without a loop. Refused at load: run under wazero's own guard
;; (loop heads only) its init would never be cut off.
(module
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func $fan (param $n i32)
    (if (local.get $n)
      (then
        (call $fan (i32.sub (local.get $n) (i32.const 1)))
        (call $fan (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "tunnel_init") (result i32)
    (call $fan (i32.const 40))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (i32.const 0)))
