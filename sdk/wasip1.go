//go:build wasip1

package sdk

import (
	"io"
	"os"
	"unsafe"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// This file is the wasm side of ABI v2: the host imports and the guest
// exports. //go:wasmexport works in any package, so a plugin's package main
// only has to import sdk and call Register.

//go:wasmimport tunnel input_buffer
func hostInputBuffer(ptr unsafe.Pointer, capacity int32) int32

//go:wasmimport tunnel config
func hostConfig(buf unsafe.Pointer, limit int32) int32

//go:wasmimport tunnel config_error
func hostConfigError(ptr unsafe.Pointer, n int32)

//go:wasmimport tunnel conn_info
func hostConnInfo(key int32, buf unsafe.Pointer, limit int32) int32

//go:wasmimport tunnel send
func hostSend(dir int32, ptr unsafe.Pointer, n int32) int32

//go:wasmimport tunnel close_write
func hostCloseWrite(dir int32) int32

//go:wasmimport tunnel close
func hostClose() int32

//go:wasmimport tunnel log
func hostLog(level int32, ptr unsafe.Pointer, n int32)

//go:wasmimport tunnel now
func hostNow() int64

//go:wasmimport tunnel set_timer
func hostSetTimer(conn int64, ns int64) int32

//go:wasmimport tunnel set_target
func hostSetTarget(conn int64, ptr unsafe.Pointer, n int32) int32

//go:wasmimport tunnel set_tag
func hostSetTag(conn int64, kptr unsafe.Pointer, klen int32, vptr unsafe.Pointer, vlen int32) int32

//go:wasmimport tunnel get_tag
func hostGetTag(conn int64, kptr unsafe.Pointer, klen int32, buf unsafe.Pointer, limit int32) int32

//go:wasmimport tunnel defer_end
func hostDeferEnd(conn int64, dir int32) int32

//go:wasmimport tunnel pause_read
func hostPauseRead(conn int64, dir, pause int32) int32

//go:wasmimport tunnel state_get
func hostStateGet(kptr unsafe.Pointer, klen int32, buf unsafe.Pointer, limit int32) int32

//go:wasmimport tunnel state_set
func hostStateSet(kptr unsafe.Pointer, klen int32, vptr unsafe.Pointer, vlen int32) int32

//go:wasmimport tunnel state_delete
func hostStateDelete(kptr unsafe.Pointer, klen int32) int32

//go:wasmimport tunnel state_cas
func hostStateCAS(kptr unsafe.Pointer, klen int32, optr unsafe.Pointer, olen int32, nptr unsafe.Pointer, nlen int32) int32

//go:wasmimport tunnel state_add
func hostStateAdd(kptr unsafe.Pointer, klen int32, delta int64, out unsafe.Pointer) int32

//go:wasmimport tunnel metric_define
func hostMetricDefine(kind int32, nptr unsafe.Pointer, nlen int32, lptr unsafe.Pointer, llen int32, bptr unsafe.Pointer, bcount int32) int32

//go:wasmimport tunnel metric_add
func hostMetricAdd(id int32, delta int64) int32

//go:wasmimport tunnel metric_set
func hostMetricSet(id int32, value int64) int32

//go:wasmimport tunnel metric_observe
func hostMetricObserve(id int32, value float64) int32

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

// wasmHost implements guest.Host with the host imports.
type wasmHost struct{}

func (wasmHost) InputBuffer(b []byte) int32 { return hostInputBuffer(ptr(b), int32(len(b))) }
func (wasmHost) Config(b []byte) int32      { return hostConfig(ptr(b), int32(len(b))) }
func (wasmHost) ConfigError(msg []byte)     { hostConfigError(ptr(msg), int32(len(msg))) }
func (wasmHost) Send(dir int32, b []byte) int32 {
	return hostSend(dir, ptr(b), int32(len(b)))
}
func (wasmHost) CloseWrite(dir int32) int32 { return hostCloseWrite(dir) }
func (wasmHost) Close() int32               { return hostClose() }
func (wasmHost) Log(level int32, msg []byte) {
	hostLog(level, ptr(msg), int32(len(msg)))
}
func (wasmHost) ConnInfo(key int32, b []byte) int32 {
	return hostConnInfo(key, ptr(b), int32(len(b)))
}
func (wasmHost) Stdout() io.Writer { return os.Stdout }
func (wasmHost) Now() int64        { return hostNow() }
func (wasmHost) SetTimer(conn int64, ns int64) int32 {
	return hostSetTimer(conn, ns)
}
func (wasmHost) SetTarget(conn int64, addr []byte) int32 {
	return hostSetTarget(conn, ptr(addr), int32(len(addr)))
}
func (wasmHost) SetTag(conn int64, k, v []byte) int32 {
	return hostSetTag(conn, ptr(k), int32(len(k)), ptr(v), int32(len(v)))
}
func (wasmHost) Tag(conn int64, k, buf []byte) int32 {
	return hostGetTag(conn, ptr(k), int32(len(k)), ptr(buf), int32(len(buf)))
}

func (wasmHost) DeferEnd(conn int64, dir int32) int32 { return hostDeferEnd(conn, dir) }
func (wasmHost) PauseRead(conn int64, dir, pause int32) int32 {
	return hostPauseRead(conn, dir, pause)
}

func (wasmHost) StateGet(k, buf []byte) int32 {
	return hostStateGet(ptr(k), int32(len(k)), ptr(buf), int32(len(buf)))
}
func (wasmHost) StateSet(k, v []byte) int32 {
	return hostStateSet(ptr(k), int32(len(k)), ptr(v), int32(len(v)))
}
func (wasmHost) StateDelete(k []byte) int32 { return hostStateDelete(ptr(k), int32(len(k))) }
func (wasmHost) StateCAS(k, old, new []byte) int32 {
	return hostStateCAS(ptr(k), int32(len(k)), ptr(old), int32(len(old)), ptr(new), int32(len(new)))
}
func (wasmHost) StateAdd(k []byte, delta int64, out []byte) int32 {
	return hostStateAdd(ptr(k), int32(len(k)), delta, ptr(out))
}
func (wasmHost) MetricDefine(kind int32, name, labels []byte, bounds []float64) int32 {
	var bp unsafe.Pointer
	if len(bounds) > 0 {
		bp = unsafe.Pointer(unsafe.SliceData(bounds))
	}
	return hostMetricDefine(kind, ptr(name), int32(len(name)), ptr(labels), int32(len(labels)), bp, int32(len(bounds)))
}
func (wasmHost) MetricAdd(id int32, delta int64) int32   { return hostMetricAdd(id, delta) }
func (wasmHost) MetricSet(id int32, value int64) int32   { return hostMetricSet(id, value) }
func (wasmHost) MetricObserve(id int32, v float64) int32 { return hostMetricObserve(id, v) }

// the is the module's one instance.
var the = newInstance(wasmHost{})

//go:wasmexport tunnel_abi_version
func tunnelABIVersion() int32 { return abi.Version }

//go:wasmexport tunnel_init
func tunnelInit() int32 {
	defer guard("the factory")
	return the.Init()
}

//go:wasmexport tunnel_on_open
func tunnelOnOpen(conn int64) int32 {
	defer guard("NewConn")
	return the.OnOpen(conn)
}

//go:wasmexport tunnel_on_data
func tunnelOnData(conn int64, dir, n, end int32) int32 {
	defer guard("OnData")
	return the.OnData(conn, dir, n, end)
}

//go:wasmexport tunnel_on_close
func tunnelOnClose(conn int64) {
	defer guard("OnClose")
	the.OnClose(conn)
}

//go:wasmexport tunnel_on_timer
func tunnelOnTimer(conn int64) int32 {
	defer guard("OnTimer")
	return the.OnTimer(conn)
}

// guard writes a panic's message to the tunnel's log, where the operator
// looks (the guest's stderr is usually not granted), then lets the panic
// go on: the instance is dead and the host applies the plugin's failure
// policy.
func guard(where string) {
	if r := recover(); r != nil {
		msg := "sdk: panic in " + where + ": " + panicText(r)
		hostLog(abi.LogError, ptr([]byte(msg)), int32(len(msg)))
		panic(r)
	}
}

func panicText(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "(a value of another type)"
}
