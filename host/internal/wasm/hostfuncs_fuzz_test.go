package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// FuzzHostFunctions calls every host function of the import module
// "tunnel" (hostSignatures: ABI v1, v2, shared state and metrics) from a
// real guest, with arguments the fuzzer chooses, in every kind of callback
// (tunnel_init, on_open, on_data, on_timer, on_close), through the
// instrumented sandbox with a host that answers like the real one. Each
// call must end in a status (a result >= 0 or one of abi's Status codes)
// or a trap the host chose (a *Violation, the instance then replaced),
// never a Go panic in a host function or any other error; and a host
// function may write into guest memory only inside the (buf, limit) or
// out range it was given.
//
// The guest (hostCallerModule) is generated from hostSignatures, so a host
// function added later is fuzzed too. A step of the input is a record: the
// function (an index into the sorted names), the action the callback
// returns, and 8 bytes per parameter; the guest loads the parameters from
// the record and stores the result where the test reads it.
func FuzzHostFunctions(f *testing.F) {
	names := hostFunctionNames()
	bin := hostCallerModule(f, names)
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		f.Fatal(err)
	}
	defer e.Close(ctx)
	c, err := e.Compile(ctx, bin)
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close(ctx)
	if !c.Instrumented() {
		f.Fatal("the caller guest is not instrumented")
	}

	// Seeds: each function with arguments inside memory, reaching past
	// it, and the extremes, in each kind of callback.
	for i := range names {
		for _, args := range [][]uint64{
			{0, fzScratch, 16, fzScratch + 64, 16, fzScratch + 128, 4, 0},
			{1, fzScratch, 0, fzScratch, 0, fzScratch, 0, 1},
			{fzConn, 65530, 100, 65535, 2, 65536, 1, 0},
			{fzConn, math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxUint32, 0, math.MaxUint32, math.MaxUint64},
			{math.MaxUint64, 0, 1 << 31, fzScratch, 1 << 16, 3, 5, 1},
		} {
			for _, cb := range []byte{cbData, cbOpen, cbTimer, cbClose, cbInit} {
				f.Add(fuzzInput(cb, byte(i), byte(i%3), args))
			}
		}
	}

	// Pairs that write back what the first call stored.
	fnIndex := func(name string) byte { return byte(slices.Index(names, name)) }
	for _, pair := range [][2][]byte{
		{fuzzInput(cbData, fnIndex(abi.ImportSetTag), 0, []uint64{fzConn, fzScratch, 4, fzScratch + 64, 4}),
			fuzzInput(cbClose, fnIndex(abi.ImportGetTag), 0, []uint64{fzConn, fzScratch, 4, fzScratch + 128, 16})},
		{fuzzInput(cbOpen, fnIndex(abi.ImportStateSet), 0, []uint64{fzScratch, 4, fzScratch + 64, 4}),
			fuzzInput(cbTimer, fnIndex(abi.ImportStateGet), 0, []uint64{fzScratch, 4, fzScratch + 128, 16})},
		{fuzzInput(cbInit, 0xff, 0, nil), // the config is this record
			fuzzInput(cbData, fnIndex(abi.ImportConfig), 0, []uint64{fzScratch + 300, 100})},
		{fuzzInput(cbInit, fnIndex(abi.ImportConnInfo), 0, []uint64{0, fzScratch, 16}),
			fuzzInput(cbData, fnIndex(abi.ImportStateAdd), 0, []uint64{fzScratch, 4, 5, fzScratch + 200})},
		// A counter, then an add whose sum would land past memory: it
		// traps and must not count.
		{fuzzInput(cbData, fnIndex(abi.ImportStateAdd), 0, []uint64{fzScratch, 4, 5, fzScratch + 200}),
			fuzzInput(cbData, fnIndex(abi.ImportStateAdd), 0, []uint64{fzScratch, 4, 5, 65532})},
	} {
		f.Add(append(slices.Clone(pair[0]), pair[1]...))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		steps := decodeSteps(data)
		var initRec []byte
		if len(steps) > 0 && steps[0].callback == cbInit {
			initRec, steps = steps[0].record, steps[1:]
		}
		h := &fuzzHost{conn: fzConn}
		// The store outlives the instances, as the plugin's does.
		sh := &Shared{State: NewState(256, 4<<10), Metrics: NewMetrics()}
		in, err := fuzzInstance(ctx, c, initRec, h, sh)
		if err != nil {
			if _, ok := errors.AsType[*Violation](err); !ok {
				t.Fatalf("tunnel_init calling %s: %v: neither a status nor a trap", describe(names, initRec), err)
			}
			if in, err = fuzzInstance(ctx, c, nil, h, sh); err != nil {
				t.Fatal(err)
			}
		}
		defer func() { in.Close(ctx) }()
		for _, s := range steps {
			before := memory(t, in)
			stored := stateOf(sh.State)
			err := s.run(in, h)
			if err != nil {
				_, violation := errors.AsType[*Violation](err)
				if !violation && !errors.Is(err, ErrTimeout) {
					t.Fatalf("%s calling %s: %v: neither a status nor a trap", s.name(), describe(names, s.record), err)
				}
				// A trapped call changes nothing in the store: a guest
				// that retries must not count twice.
				if now := stateOf(sh.State); !maps.EqualFunc(stored, now, bytes.Equal) {
					t.Fatalf("%s calling %s trapped (%v) and changed the shared state from %q to %q", s.name(), describe(names, s.record), err, stored, now)
				}
				// A trapped instance is done; the host makes a new one.
				in.Close(ctx)
				if in, err = fuzzInstance(ctx, c, nil, h, sh); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if s.record[0] >= byte(len(names)) {
				continue
			}
			name := names[s.record[0]]
			after := memory(t, in)
			checkResult(t, name, s, after)
			checkWrites(t, name, s, before, after)
		}
	})
}

// Where the guest keeps things (one 64 KiB page).
const (
	fzInBuf     = 1024 // the input buffer
	fzCap       = 1024
	fzPending   = 4096 // the record the next callback runs
	fzResult    = 8192 // the last call's result, as an i64
	fzScratch   = 8256 // free memory, where arguments point
	fzMaxParams = 8
	fzRecLen    = 8 + 8*fzMaxParams // fn, action, deferred, pad, params
	fzConn      = 7                 // the connection id of the calls
	fzNoCall    = 1 << 40           // the result when no function was called
)

// The callbacks a step runs in.
const (
	cbData = iota
	cbOpen
	cbTimer
	cbClose
	cbInit // only as the first step: the record is the config
	cbCount
)

type step struct {
	callback byte
	record   []byte // fzRecLen bytes
}

func (s step) name() string {
	return [...]string{"tunnel_on_data", "tunnel_on_open", "tunnel_on_timer", "tunnel_on_close", "tunnel_init"}[s.callback]
}

func (s step) param(j int) uint64 { return binary.LittleEndian.Uint64(s.record[8+8*j:]) }

// run runs the step's callback. A record for on_open, on_timer and
// on_close is first handed over by an on_data call that does not run it.
func (s step) run(in *Instance, h *fuzzHost) error {
	if s.callback == cbData {
		_, err := in.OnData(h, fzConn, int32(s.record[3]&1), s.record, s.record[4]&1 == 1)
		return err
	}
	rec := slices.Clone(s.record)
	rec[2] = 1 // deferred
	if _, err := in.OnData(h, fzConn, 0, rec, false); err != nil {
		return fmt.Errorf("handing over the record: %w", err)
	}
	var err error
	switch s.callback {
	case cbOpen:
		_, err = in.OnOpen(h, fzConn)
	case cbTimer:
		_, err = in.OnTimer(h, fzConn)
	default:
		err = in.OnClose(h, fzConn)
	}
	return err
}

// decodeSteps cuts the input into at most 16 steps of a callback byte and
// a record (zero-padded).
func decodeSteps(data []byte) []step {
	var steps []step
	for len(data) > 0 && len(steps) < 16 {
		cb := data[0] % cbCount
		if cb == cbInit && len(steps) > 0 {
			cb = cbData
		}
		data = data[1:]
		// The function, the action, the direction and end flags, then
		// the parameters.
		var head [3]byte
		k := copy(head[:], data)
		data = data[k:]
		rec := make([]byte, fzRecLen)
		rec[0], rec[1], rec[3], rec[4] = head[0], head[1], head[2]&1, head[2]>>1&1
		k = copy(rec[8:], data)
		data = data[k:]
		steps = append(steps, step{cb, rec})
	}
	return steps
}

// fuzzInput is the input of one step (decodeSteps's format).
func fuzzInput(cb, fn, flags byte, args []uint64) []byte {
	b := []byte{cb, fn, 0, flags}
	for j := range fzMaxParams {
		var a uint64
		if j < len(args) {
			a = args[j]
		}
		b = binary.LittleEndian.AppendUint64(b, a)
	}
	return b
}

func describe(names []string, rec []byte) string {
	if len(rec) < fzRecLen || rec[0] >= byte(len(names)) {
		return "nothing"
	}
	s := step{record: rec}
	sig := hostSignatures[names[rec[0]]]
	args := make([]string, len(sig.params))
	for j := range args {
		args[j] = fmt.Sprintf("%#x", s.param(j))
	}
	return fmt.Sprintf("%s(%s)", names[rec[0]], fmt.Sprint(args))
}

func fuzzInstance(ctx context.Context, c *Compiled, initRec []byte, h *fuzzHost, sh *Shared) (*Instance, error) {
	return c.Instantiate(ctx, Options{
		Mode:        Sandboxed,
		MemoryLimit: 1 << 20,
		CallTimeout: time.Minute, // never reached: the calls are short
		InitTimeout: time.Minute,
		MaxOutput:   64 << 10,
		Config:      initRec,
		Log:         h.Log,
		Shared:      sh,
	})
}

// stateOf copies the shared state's keys and values.
func stateOf(s *State) map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string][]byte, len(s.m))
	for k, v := range s.m {
		m[k] = slices.Clone(v)
	}
	return m
}

func memory(t *testing.T, in *Instance) []byte {
	b, ok := in.mem.Read(0, in.mem.Size())
	if !ok {
		t.Fatal("cannot read the guest's memory")
	}
	return slices.Clone(b)
}

// checkResult: a function with an i32 result returned a length or a
// count (>= 0) or a status abi defines.
func checkResult(t *testing.T, name string, s step, mem []byte) {
	r := int64(binary.LittleEndian.Uint64(mem[fzResult:]))
	if r == fzNoCall {
		t.Fatalf("%s: the guest did not call %s", s.name(), name)
	}
	sig := hostSignatures[name]
	if len(sig.results) == 1 && sig.results[0] == i32 && int32(r) < abi.StatusNotFound {
		t.Fatalf("%s: %s returned %d, neither >= 0 nor a status", s.name(), name, int32(r))
	}
}

// writeWindows are the guest memory a host function may write: [buf,
// buf+limit) given by two of its parameters, or 8 bytes at one (out).
var writeWindows = map[string]struct{ buf, limit, fixed int }{
	abi.ImportConfig:   {buf: 0, limit: 1},
	abi.ImportConnInfo: {buf: 1, limit: 2},
	abi.ImportGetTag:   {buf: 3, limit: 4},
	abi.ImportStateGet: {buf: 2, limit: 3},
	abi.ImportStateAdd: {buf: 3, fixed: 8},
}

// checkWrites: outside the guest's own records and result, memory changed
// only where the function may write.
func checkWrites(t *testing.T, name string, s step, before, after []byte) {
	lo, hi := uint64(0), uint64(0)
	if w, ok := writeWindows[name]; ok {
		lo = uint64(uint32(s.param(w.buf)))
		if w.fixed > 0 {
			hi = lo + uint64(w.fixed)
		} else {
			hi = lo + uint64(uint32(s.param(w.limit)))
		}
	}
	for i := range after {
		u := uint64(i)
		own := (u >= fzInBuf && u < fzInBuf+fzCap) || (u >= fzPending && u < fzPending+fzRecLen) || (u >= fzResult && u < fzResult+8)
		if after[i] != before[i] && !own && (u < lo || u >= hi) {
			t.Fatalf("%s: %s wrote guest memory at %d, outside [%d, %d)", s.name(), name, i, lo, hi)
		}
	}
}

// fuzzHost answers like the tunnel's host: statuses for bad directions,
// keys and connection ids, a connection that can be closed.
type fuzzHost struct {
	NoConn
	conn   uint64
	closed [2]bool
	tags   map[string]string
	target bool
}

func (h *fuzzHost) dirStatus(dir int32) int32 {
	switch {
	case dir != 0 && dir != 1:
		return abi.StatusBadArgument
	case h.closed[dir]:
		return abi.StatusClosed
	}
	return abi.StatusOK
}

func (h *fuzzHost) Send(dir int32, b []byte) int32 { return h.dirStatus(dir) }

func (h *fuzzHost) CloseWrite(dir int32) int32 {
	st := h.dirStatus(dir)
	if st == abi.StatusOK {
		h.closed[dir] = true
	}
	return st
}

func (h *fuzzHost) Close() int32 {
	h.closed = [2]bool{true, true}
	return abi.StatusOK
}

func (h *fuzzHost) ConnInfo(key int32) (string, int32) {
	if key < 0 || key > abi.InfoTLSVersion {
		return "", abi.StatusBadArgument
	}
	return "127.0.0.1:4242", abi.StatusOK
}

func (h *fuzzHost) Log(int32, []byte) {}

func (h *fuzzHost) SetTimer(conn uint64, ns int64) int32 {
	if conn != h.conn {
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

func (h *fuzzHost) SetTarget(conn uint64, addr []byte) int32 {
	switch {
	case conn != h.conn:
		return abi.StatusBadArgument
	case h.target:
		return abi.StatusAlreadySet
	}
	h.target = true
	return abi.StatusOK
}

func (h *fuzzHost) SetTag(conn uint64, key, value []byte) int32 {
	switch {
	case conn != h.conn:
		return abi.StatusBadArgument
	case len(key) > abi.MaxTagKeyLen || len(value) > abi.MaxTagValueLen || len(h.tags) >= abi.MaxTags:
		return abi.StatusTooLarge
	}
	if h.tags == nil {
		h.tags = map[string]string{}
	}
	h.tags[string(key)] = string(value)
	return abi.StatusOK
}

func (h *fuzzHost) Tag(conn uint64, key []byte) (string, int32) {
	if conn != h.conn {
		return "", abi.StatusBadArgument
	}
	v, ok := h.tags[string(key)]
	if !ok {
		return "", abi.StatusNotFound
	}
	return v, abi.StatusOK
}

func (h *fuzzHost) DeferEnd(conn uint64, dir int32) int32 {
	if conn != h.conn {
		return abi.StatusBadArgument
	}
	return h.dirStatus(dir)
}

// hostFunctionNames are the host functions, sorted: the caller guest
// imports them in this order, so a record's function byte is an index.
func hostFunctionNames() []string {
	names := make([]string, 0, len(hostSignatures))
	for name := range hostSignatures {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Opcodes the caller guest uses besides instrument.go's.
const (
	opI64Load           = 0x29
	opF32Load           = 0x2a
	opF64Load           = 0x2b
	opI32Load8U         = 0x2d
	opI64Store          = 0x37
	opI32Eq             = 0x46
	opI32GeU            = 0x4f
	opI64ExtendI32S     = 0xac
	opI64ExtendI32U     = 0xad
	opI32ReinterpretF32 = 0xbc
	opI64ReinterpretF64 = 0xbd
)

// hostCallerModule is a plugin that imports the named host functions (in
// this order) and calls the one a record names, with the record's
// arguments, from each callback:
//
//	dispatch(rec): if rec[0] == i { call import i with the params at rec+8,
//	  rec+16, ...; store its result (as i64) at fzResult }; return rec[1]
//	tunnel_init: input_buffer(fzInBuf, fzCap); if config(fzPending,
//	  fzRecLen) == fzRecLen { dispatch(fzPending); input_buffer(...) again }
//	tunnel_on_data: copy the chunk's first fzRecLen bytes to fzPending; if
//	  the chunk is a whole record and not deferred (rec[2] == 0), return
//	  dispatch(fzPending); else FORWARD
//	tunnel_on_open, tunnel_on_timer: return dispatch(fzPending)
//	tunnel_on_close: dispatch(fzPending)
//
// Its memory has 4 KiB of a byte pattern at fzScratch.
func hostCallerModule(t testing.TB, names []string) []byte {
	t.Helper()
	n := uint32(len(names))
	idx := func(name string) uint32 { return uint32(slices.Index(names, name)) }
	i32c := func(b []byte, v int64) []byte { return appendSLEB(append(b, opI32Const), v) }
	mem := func(b []byte, op byte, off uint32) []byte {
		return appendULEB(append(b, op, 0), uint64(off)) // align 0
	}
	call := func(b []byte, fn uint32) []byte { return appendULEB(append(b, opCall), uint64(fn)) }

	// Types: one per import, then dispatch (i32)->i32, ()->i32,
	// (i64 i32 i32 i32)->i32, (i64)->i32, (i64)->().
	var types []byte
	vec := func(vs []api.ValueType) []byte { return append(appendULEB(nil, uint64(len(vs))), vs...) }
	fnType := func(params, results []api.ValueType) {
		types = append(types, formFunc)
		types = append(types, vec(params)...)
		types = append(types, vec(results)...)
	}
	for _, name := range names {
		sig := hostSignatures[name]
		if len(sig.params) > fzMaxParams || len(sig.results) > 1 {
			t.Fatalf("%s: %d params, %d results: make the records bigger", name, len(sig.params), len(sig.results))
		}
		fnType(sig.params, sig.results)
	}
	fnType([]api.ValueType{i32}, []api.ValueType{i32})
	fnType(nil, []api.ValueType{i32})
	fnType([]api.ValueType{i64, i32, i32, i32}, []api.ValueType{i32})
	fnType([]api.ValueType{i64}, []api.ValueType{i32})
	fnType([]api.ValueType{i64}, nil)
	tDispatch, tVersion, tData, tOpen, tClose := n, n+1, n+2, n+3, n+4

	var imports []byte
	for i, name := range names {
		imports = appendULEB(imports, uint64(len(abi.ImportModule)))
		imports = append(imports, abi.ImportModule...)
		imports = appendULEB(imports, uint64(len(name)))
		imports = append(imports, name...)
		imports = append(imports, importFunc)
		imports = appendULEB(imports, uint64(i))
	}

	fDispatch := n
	type fn struct {
		export string
		typ    uint32
		locals []byte
		code   []byte
	}
	// dispatch
	var d []byte
	d = appendSLEB(append(d, opI64Const), fzNoCall)
	d = appendULEB(append(d, opLocalSet), 1)
	for i, name := range names {
		sig := hostSignatures[name]
		d = append(d, opLocalGet, 0)
		d = mem(d, opI32Load8U, 0)
		d = i32c(d, int64(i))
		d = append(d, opI32Eq, opIf, blockEmpty)
		for j, p := range sig.params {
			d = append(d, opLocalGet, 0)
			off := uint32(8 + 8*j)
			switch p {
			case i32:
				d = mem(d, opI32Load, off)
			case i64:
				d = mem(d, opI64Load, off)
			case api.ValueTypeF32:
				d = mem(d, opF32Load, off)
			case api.ValueTypeF64:
				d = mem(d, opF64Load, off)
			default:
				t.Fatalf("%s: parameter type %v", name, p)
			}
		}
		d = call(d, uint32(i))
		if len(sig.results) == 1 {
			switch sig.results[0] {
			case i32:
				d = append(d, opI64ExtendI32S)
			case i64:
			case api.ValueTypeF32:
				d = append(d, opI32ReinterpretF32, opI64ExtendI32U)
			case api.ValueTypeF64:
				d = append(d, opI64ReinterpretF64)
			}
		} else {
			d = append(d, opI64Const, 0) // called
		}
		d = append(d, opLocalSet, 1, opEnd)
	}
	d = i32c(d, fzResult)
	d = append(d, opLocalGet, 1)
	d = mem(d, opI64Store, 0)
	d = append(d, opLocalGet, 0)
	d = mem(d, opI32Load8U, 1)

	inputBuffer := func(b []byte) []byte {
		b = i32c(b, fzInBuf)
		b = i32c(b, fzCap)
		return append(call(b, idx(abi.ImportInputBuffer)), opDrop)
	}
	var initCode []byte
	initCode = inputBuffer(initCode)
	initCode = i32c(initCode, fzPending)
	initCode = i32c(initCode, fzRecLen)
	initCode = call(initCode, idx(abi.ImportConfig))
	initCode = i32c(initCode, fzRecLen)
	initCode = append(initCode, opI32Eq, opIf, blockEmpty)
	initCode = i32c(initCode, fzPending)
	initCode = append(call(initCode, fDispatch), opDrop)
	initCode = inputBuffer(initCode)
	initCode = i32c(append(initCode, opEnd), 0)

	var data []byte
	data = i32c(data, fzPending)
	data = i32c(data, fzInBuf)
	data = i32c(data, fzRecLen)
	data = append(data, opMiscPrefix, miscMemoryCopy, 0, 0)
	data = append(data, opLocalGet, 2)
	data = i32c(data, fzRecLen)
	data = append(data, opI32GeU, opIf, blockEmpty)
	data = i32c(data, fzPending)
	data = mem(data, opI32Load8U, 2)
	data = append(data, opI32Eqz, opIf, blockEmpty)
	data = i32c(data, fzPending)
	data = append(call(data, fDispatch), opReturn, opEnd, opEnd)
	data = i32c(data, 0)

	runPending := call(i32c(nil, fzPending), fDispatch)
	funcs := []fn{
		{"", tDispatch, []byte{1, 1, valI64}, d},
		{abi.ExportABIVersion, tVersion, []byte{0}, i32c(nil, abi.Version)},
		{abi.ExportInit, tVersion, []byte{0}, initCode},
		{abi.ExportOnData, tData, []byte{0}, data},
		{abi.ExportOnOpen, tOpen, []byte{0}, runPending},
		{abi.ExportOnTimer, tOpen, []byte{0}, runPending},
		{abi.ExportOnClose, tClose, []byte{0}, append(slices.Clone(runPending), opDrop)},
	}

	section := func(out []byte, id byte, count int, payload []byte) []byte {
		p := append(appendULEB(nil, uint64(count)), payload...)
		out = append(out, id)
		return append(appendULEB(out, uint64(len(p))), p...)
	}
	out := slices.Clone(magic)
	out = section(out, secType, len(names)+5, types)
	out = section(out, secImport, len(names), imports)
	var fsec, exports, code []byte
	for k, f := range funcs {
		fsec = appendULEB(fsec, uint64(f.typ))
		if f.export != "" {
			exports = appendULEB(exports, uint64(len(f.export)))
			exports = append(exports, f.export...)
			exports = appendULEB(append(exports, 0x00), uint64(fDispatch)+uint64(k)) // function export
		}
		body := append(slices.Clone(f.locals), f.code...)
		body = append(body, opEnd)
		code = appendULEB(code, uint64(len(body)))
		code = append(code, body...)
	}
	out = section(out, secFunction, len(funcs), fsec)
	out = section(out, 5, 1, []byte{0x00, 1}) // memory: 1 page, no maximum
	exports = appendULEB(exports, uint64(len(abi.ExportMemory)))
	exports = append(exports, abi.ExportMemory...)
	exports = append(exports, 0x02, 0)         // memory export
	out = section(out, 7, len(funcs), exports) // 6 functions and the memory
	out = section(out, secCode, len(funcs), code)
	// The scratch memory starts with a pattern, so that a value a host
	// function copies or writes differs from what was there.
	pattern := make([]byte, 4096)
	for i := range pattern {
		pattern[i] = byte(i*7 + 1)
	}
	seg := append(i32c([]byte{0x00}, fzScratch), opEnd) // active, memory 0, at fzScratch
	seg = append(appendULEB(seg, uint64(len(pattern))), pattern...)
	out = section(out, 11, 1, seg)
	if !bytes.HasPrefix(out, magic) {
		t.Fatal("bad module")
	}
	return out
}
