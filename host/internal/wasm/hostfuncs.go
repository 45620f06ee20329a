package wasm

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// maxText caps config_error and log messages.
const maxText = 4 << 10

// hostSignatures are the functions of the import module "tunnel".
var hostSignatures = map[string]signature{
	abi.ImportInputBuffer: {[]api.ValueType{i32, i32}, []api.ValueType{i32}},
	abi.ImportConfig:      {[]api.ValueType{i32, i32}, []api.ValueType{i32}},
	abi.ImportConfigError: {[]api.ValueType{i32, i32}, nil},
	abi.ImportConnInfo:    {[]api.ValueType{i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportSend:        {[]api.ValueType{i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportCloseWrite:  {[]api.ValueType{i32}, []api.ValueType{i32}},
	abi.ImportClose:       {nil, []api.ValueType{i32}},
	abi.ImportLog:         {[]api.ValueType{i32, i32, i32}, nil},

	abi.ImportNow:       {nil, []api.ValueType{i64}},
	abi.ImportSetTimer:  {[]api.ValueType{i64, i64}, []api.ValueType{i32}},
	abi.ImportSetTarget: {[]api.ValueType{i64, i32, i32}, []api.ValueType{i32}},
	abi.ImportSetTag:    {[]api.ValueType{i64, i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportGetTag:    {[]api.ValueType{i64, i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportDeferEnd:  {[]api.ValueType{i64, i32}, []api.ValueType{i32}},
	abi.ImportPauseRead: {[]api.ValueType{i64, i32, i32}, []api.ValueType{i32}},
}

// v2Imports are the host functions of ABI v2.
var v2Imports = map[string]bool{
	abi.ImportNow: true, abi.ImportSetTimer: true, abi.ImportSetTarget: true,
	abi.ImportSetTag: true, abi.ImportGetTag: true, abi.ImportDeferEnd: true,
	abi.ImportPauseRead: true,
}

var hostFuncs = map[string]func(in *Instance, stack []uint64){
	abi.ImportInputBuffer: hostInputBuffer,
	abi.ImportConfig:      hostConfig,
	abi.ImportConfigError: hostConfigError,
	abi.ImportConnInfo:    hostConnInfo,
	abi.ImportSend:        hostSend,
	abi.ImportCloseWrite:  hostCloseWrite,
	abi.ImportClose:       hostClose,
	abi.ImportLog:         hostLog,

	abi.ImportNow:       hostNow,
	abi.ImportSetTimer:  hostSetTimer,
	abi.ImportSetTarget: hostSetTarget,
	abi.ImportSetTag:    hostSetTag,
	abi.ImportGetTag:    hostGetTag,
	abi.ImportDeferEnd:  hostDeferEnd,
	abi.ImportPauseRead: hostPauseRead,
}

func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(abi.ImportModule)
	for name, fn := range hostFuncs {
		sig := hostSignatures[name]
		b.NewFunctionBuilder().
			WithGoFunction(goFunc(fn), sig.params, sig.results).
			WithName(name).
			Export(name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// goFunc finds the calling instance in the call's context (the Instance
// itself) without allocating.
func goFunc(fn func(in *Instance, stack []uint64)) api.GoFunc {
	return func(ctx context.Context, stack []uint64) {
		in, ok := ctx.(*Instance)
		if !ok {
			in, ok = ctx.Value(instKey{}).(*Instance)
		}
		if !ok || in.host == nil {
			panic("tunnel host function called outside a plugin call")
		}
		fn(in, stack)
	}
}

func status(s int32) uint64 { return uint64(uint32(s)) }

func hostInputBuffer(in *Instance, stack []uint64) {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	if ptr == tickPtr && n == 0 {
		// A tick of instrumented code (see instrument.go): the place where a
		// call past its deadline stops, and where a long call shares the
		// CPU (yield.go).
		if in.killed.Load() {
			in.violation = ErrTimeout
			panic(trapped{})
		}
		in.shareCPU() // yield.go
		stack[0] = status(abi.StatusOK)
		return
	}
	switch {
	case !in.inInit:
		stack[0] = status(abi.StatusNotAllowed)
	case n == 0 || uint64(ptr)+uint64(n) > uint64(in.mem.Size()):
		stack[0] = status(abi.StatusBadArgument)
	default:
		in.bufPtr, in.bufCap = ptr, n
		stack[0] = status(abi.StatusOK)
	}
}

func hostConfig(in *Instance, stack []uint64) {
	buf, limit := uint32(stack[0]), uint32(stack[1])
	n := uint32(len(in.config))
	if n > 0 && n <= limit {
		if !in.mem.Write(buf, in.config) {
			in.fail("%s: range [%d, %d) is outside the guest's memory", abi.ImportConfig, buf, uint64(buf)+uint64(n))
		}
	}
	stack[0] = uint64(n)
}

func hostConfigError(in *Instance, stack []uint64) {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	b := in.read(abi.ImportConfigError, ptr, n)
	if len(b) > maxText {
		b = b[:maxText]
	}
	in.cfgErr = printable(b)
}

// printable is guest text made safe for a terminal and a log line: control
// characters (escape sequences, newlines that would forge a line, NULs)
// written as \xNN or \uNNNN, invalid UTF-8 as U+FFFD.
func printable(b []byte) string {
	var sb strings.Builder
	for _, r := range strings.ToValidUTF8(string(b), "\uFFFD") {
		switch {
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, "\\x%02x", r)
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r):
			fmt.Fprintf(&sb, "\\u%04x", r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

func hostConnInfo(in *Instance, stack []uint64) {
	key, buf, limit := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	v, st := in.host.ConnInfo(key)
	stack[0] = in.putString(abi.ImportConnInfo, buf, limit, v, st)
}

// putString is the result of a host function that hands the guest a string
// in its own buffer (buf, limit): a negative status as is, else the
// string's length, the string written only if it fits.
func (in *Instance) putString(fn string, buf, limit uint32, v string, st int32) uint64 {
	if st < 0 {
		return status(st)
	}
	n := uint32(len(v))
	if n > 0 && n <= limit && !in.mem.WriteString(buf, v) {
		in.fail("%s: range [%d, %d) is outside the guest's memory", fn, buf, uint64(buf)+uint64(n))
	}
	return uint64(n)
}

func hostSend(in *Instance, stack []uint64) {
	dir, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	b := in.read(abi.ImportSend, ptr, n)
	in.spend(abi.ImportSend, n)
	stack[0] = status(in.host.Send(dir, b))
}

func hostCloseWrite(in *Instance, stack []uint64) {
	stack[0] = status(in.host.CloseWrite(int32(stack[0])))
}

func hostClose(in *Instance, stack []uint64) {
	stack[0] = status(in.host.Close())
}

func hostLog(in *Instance, stack []uint64) {
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	b := in.read(abi.ImportLog, ptr, n)
	in.spend(abi.ImportLog, n)
	if len(b) > maxText {
		b = b[:maxText]
	}
	in.host.Log(level, b)
}

// ABI v2.

func hostNow(in *Instance, stack []uint64) {
	stack[0] = uint64(in.host.Now())
}

func hostSetTimer(in *Instance, stack []uint64) {
	stack[0] = status(in.host.SetTimer(stack[0], int64(stack[1])))
}

func hostSetTarget(in *Instance, stack []uint64) {
	conn, ptr, n := stack[0], uint32(stack[1]), uint32(stack[2])
	b := in.read(abi.ImportSetTarget, ptr, n)
	stack[0] = status(in.host.SetTarget(conn, b))
}

func hostSetTag(in *Instance, stack []uint64) {
	conn := stack[0]
	k := in.read(abi.ImportSetTag, uint32(stack[1]), uint32(stack[2]))
	v := in.read(abi.ImportSetTag, uint32(stack[3]), uint32(stack[4]))
	stack[0] = status(in.host.SetTag(conn, k, v))
}

func hostGetTag(in *Instance, stack []uint64) {
	conn, buf, limit := stack[0], uint32(stack[3]), uint32(stack[4])
	k := in.read(abi.ImportGetTag, uint32(stack[1]), uint32(stack[2]))
	v, st := in.host.Tag(conn, k)
	stack[0] = in.putString(abi.ImportGetTag, buf, limit, v, st)
}

func hostDeferEnd(in *Instance, stack []uint64) {
	stack[0] = status(in.host.DeferEnd(stack[0], int32(stack[1])))
}

func hostPauseRead(in *Instance, stack []uint64) {
	stack[0] = status(in.host.PauseRead(stack[0], int32(stack[1]), int32(stack[2])))
}
