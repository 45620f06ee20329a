// Package guest is the seam between package sdk and what runs it: the real
// host (the wasip1 build of sdk talks to it through wasm imports and exports)
// or the native emulator in sdk/sdktest. It mirrors ABI v1 one to one, so the
// emulator exercises the very code the compiled plugin runs.
package guest

import "io"

// Host is the host side of ABI v1 as seen by one plugin instance: one method
// per host import (see sdk/ABI.md). Buffers are guest memory; the host copies
// out of them before returning and writes into them only up to len(buf).
type Host interface {
	// InputBuffer registers buf as the instance's input buffer.
	InputBuffer(buf []byte) int32
	// Config copies the plugin's configuration into buf if it fits and
	// returns its length.
	Config(buf []byte) int32
	// ConfigError reports why the configuration is rejected.
	ConfigError(msg []byte)
	// ConnInfo copies the value of key for the current connection into buf if
	// it fits and returns its length (or a negative status).
	ConnInfo(key int32, buf []byte) int32
	// Send passes b on in direction dir from the current connection.
	Send(dir int32, b []byte) int32
	// CloseWrite half-closes the current connection toward dir's destination.
	CloseWrite(dir int32) int32
	// Close closes the current connection once its pending bytes are written.
	Close() int32
	// Log writes msg to the host's log at level.
	Log(level int32, msg []byte)
	// Stdout is where the plugin's standard output goes.
	Stdout() io.Writer

	// ABI v2.

	// Now returns the host's monotonic clock in nanoseconds.
	Now() int64
	// SetTimer arms (ns >= 0) or disarms (ns < 0) conn's timer.
	SetTimer(conn int64, ns int64) int32
	// SetTarget chooses the address conn is dialled to.
	SetTarget(conn int64, addr []byte) int32
	// SetTag sets (or, with an empty value, removes) a tag of conn.
	SetTag(conn int64, key, value []byte) int32
	// Tag copies the value of conn's tag key into buf if it fits and
	// returns its length (or a negative status).
	Tag(conn int64, key, buf []byte) int32
	// DeferEnd keeps dir's destination open after the OnData call with
	// end=1 for dir, until CloseWrite(dir) or Close.
	DeferEnd(conn int64, dir int32) int32
	// PauseRead pauses (pause=1) or resumes (0) the reads of dir's source.
	PauseRead(conn int64, dir, pause int32) int32

	// StateGet copies the value of the plugin's shared key into buf if it
	// fits and returns its length (or a negative status).
	StateGet(key, buf []byte) int32
	// StateSet sets (or, with an empty value, deletes) a shared key.
	StateSet(key, value []byte) int32
	// StateDelete deletes a shared key.
	StateDelete(key []byte) int32
	// StateCAS replaces the value of key by new if it is old (empty: the
	// key is absent); 1 if it did, 0 if not, or a negative status.
	StateCAS(key, old, new []byte) int32
	// StateAdd adds delta to the 8-byte little-endian integer at key and
	// writes the result into out (8 bytes).
	StateAdd(key []byte, delta int64, out []byte) int32
	// MetricDefine defines a metric and returns its id (or a negative
	// status). labels is "k=v" pairs separated by '\n'.
	MetricDefine(kind int32, name, labels []byte, bounds []float64) int32
	// MetricAdd adds delta to a counter or gauge.
	MetricAdd(id int32, delta int64) int32
	// MetricSet sets a gauge.
	MetricSet(id int32, value int64) int32
	// MetricObserve adds an observation to a histogram.
	MetricObserve(id int32, value float64) int32
}

// Instance is the guest side of ABI v1: one method per guest export.
type Instance interface {
	Init() int32
	OnOpen(conn int64) int32
	OnData(conn int64, dir, n, end int32) int32
	OnClose(conn int64)
	OnTimer(conn int64) int32
}

// NewInstance makes a fresh plugin instance backed by h, using the plugin
// registered with sdk.Register. Package sdk sets it when it is initialised.
var NewInstance func(h Host) Instance
