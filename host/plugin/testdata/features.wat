;; features: a guest that uses the WebAssembly 2.0 features the host
;; enables (wazero's CoreFeaturesV2), to prove sdk/ABI.md's list: bulk
;; memory (memory.copy, memory.fill), multi-value results, sign-extension,
;; non-trapping float-to-int and 128-bit SIMD. Each chunk of 16 bytes is
;; answered with each byte plus one, followed by "!!!!".
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "tunnel_abi_version") (result i32) (i32.const 1))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (i32.const 0))
  ;; multi-value: where the answer goes and how long it is
  (func $out (param $len i32) (result i32 i32)
    (i32.const 8192)
    (i32.add (local.get $len) (i32.const 4)))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (local $ptr i32)
    (local $n i32)
    (if (i32.ne (local.get $len) (i32.const 16)) (then (return (i32.const 0))))
    (call $out (local.get $len))
    (local.set $n)
    (local.set $ptr)
    ;; bulk memory
    (memory.copy (local.get $ptr) (i32.const 0) (local.get $len))
    (memory.fill (i32.add (local.get $ptr) (local.get $len)) (i32.const 33) (i32.const 4))
    ;; SIMD: every byte plus one; the one comes from sign-extension and a
    ;; saturating conversion
    (v128.store (local.get $ptr)
      (i8x16.add (v128.load (local.get $ptr))
        (i8x16.splat (i32.extend8_s (i32.trunc_sat_f64_s (f64.const 1.5))))))
    (drop (call $send (i32.const 1) (local.get $ptr) (local.get $n)))
    (i32.const 1)))
