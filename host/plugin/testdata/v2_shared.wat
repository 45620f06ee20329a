;; v2_shared (ABI v2): the shared state and metrics from WAT, for the
;; per-call benchmarks of host/internal/wasm and the status tests of
;; host/plugin. tunnel_init defines the counter "calls_total" and the
;; histogram "lat" (bounds 1, 10). tunnel_on_data(conn, dir, len, end)
;; calls one function len times:
;;   dir 0, end 0: state_add("k", 1), the sum written at 9000;
;;   dir 1, end 0: metric_add(calls_total, 1);
;;   dir 0, end 1: state_get("k") into 16 bytes at 9000;
;;   dir 1, end 1: metric_observe(lat, 5.0).
;; and answers the client with the 8 bytes at 9000 when dir is 0.
(module
  (import "tunnel" "input_buffer" (func $input_buffer (param i32 i32) (result i32)))
  (import "tunnel" "send" (func $send (param i32 i32 i32) (result i32)))
  (import "tunnel" "state_get" (func $state_get (param i32 i32 i32 i32) (result i32)))
  (import "tunnel" "state_add" (func $state_add (param i32 i32 i64 i32) (result i32)))
  (import "tunnel" "metric_define" (func $metric_define (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tunnel" "metric_add" (func $metric_add (param i32 i64) (result i32)))
  (import "tunnel" "metric_observe" (func $metric_observe (param i32 f64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8192) "k")
  (data (i32.const 8200) "calls_total")
  (data (i32.const 8220) "lat")
  (data (i32.const 8232) "\00\00\00\00\00\00\f0\3f\00\00\00\00\00\00\24\40")
  (global $counter (mut i32) (i32.const -1))
  (global $hist (mut i32) (i32.const -1))
  (func (export "tunnel_abi_version") (result i32) (i32.const 2))
  (func (export "tunnel_init") (result i32)
    (drop (call $input_buffer (i32.const 0) (i32.const 4096)))
    (global.set $counter (call $metric_define (i32.const 0) (i32.const 8200) (i32.const 11) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
    (global.set $hist (call $metric_define (i32.const 2) (i32.const 8220) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 8232) (i32.const 2)))
    (i32.const 0))
  (func (export "tunnel_on_data") (param $conn i64) (param $dir i32) (param $len i32) (param $end i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $len)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (if (i32.eqz (local.get $end))
          (then
            (if (i32.eqz (local.get $dir))
              (then (drop (call $state_add (i32.const 8192) (i32.const 1) (i64.const 1) (i32.const 9000))))
              (else (drop (call $metric_add (global.get $counter) (i64.const 1))))))
          (else
            (if (i32.eqz (local.get $dir))
              (then (drop (call $state_get (i32.const 8192) (i32.const 1) (i32.const 9000) (i32.const 16))))
              (else (drop (call $metric_observe (global.get $hist) (f64.const 5)))))))
        (br $next)))
    (if (i32.eqz (local.get $dir))
      (then (drop (call $send (i32.const 1) (i32.const 9000) (i32.const 8)))))
    (i32.const 1)))
