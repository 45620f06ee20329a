package wasm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Instrumentation: how sandboxed guests are made interruptible cheaply.
//
// wazero's WithCloseOnContextDone makes every loop iteration exit to Go to
// check whether the module was closed, and starts a goroutine per call to
// watch the call's context. Instead, the module is rewritten before it is
// compiled (without that option) so that the guest calls the host ("tick")
// through its own input_buffer import with the reserved arguments (-1, 0)
// once every fuelPeriod steps, a step being a function entry or a loop
// iteration, in whatever frames they happen. The tick is where a call that
// ran past its deadline is cut off, and, being Go code, where the goroutine
// can be preempted, so the garbage collector is never stalled by a spinning
// guest.
//
// Endless computation needs a loop that iterates without end or calls
// without end: recursion (which a stack overflow ends only when it goes
// deep: a function that calls itself twice, 40 deep, makes 2^40 calls in 41
// frames) or calls fanning out. And counting per frame is not enough: a
// loop that calls a function whose own loop runs fewer than fuelPeriod
// times per call would multiply the two. So there is one step counter for
// the whole instance, incremented at the entry of every function and the
// head of every loop, whatever the frame. It lives in one more mutable i32
// global, and in a frame in one more i32 local (a register: a loop
// iteration pays an add, an and and a branch): the local is loaded from the
// global at the function's entry and after each call, and stored back
// before each call and wherever the function may return (return, a branch
// to the function's own label, its final end). Between two ticks a guest
// runs at most fuelPeriod steps, each as long as the straight code of one
// body: bounded by the module's size.
//
// The rewrite adds no import, function or type, and the global comes after
// every existing one, so no index changes: only the code section is
// rewritten (one local per body, the checks and the loads and stores of
// the counter) and the global section gains one entry (or is added). A
// module whose code already names the new local or global (invalid as
// written, valid once rewritten, and then able to reset its own counter)
// is refused, as is anything the decoder does not know, and the control
// instructions of proposals the engine does not enable (exceptions, tail
// calls, typed function references), whose exits it does not follow.
// Compile then refuses the module: wazero's own mechanism
// (CloseOnContextDone) checks at loop heads only.

// fuelPeriod is how many steps (function entries and loop iterations) run
// between two ticks; a power of two.
const fuelPeriod = 4096

// tickPtr is the reserved input_buffer pointer argument of a tick.
const tickPtr = 0xFFFFFFFF

var errNotInstrumentable = errors.New("module cannot be instrumented")

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: offset %d: %s", errNotInstrumentable, r.off, fmt.Sprintf(format, args...))
	}
	r.off = len(r.b)
}

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || r.off+n > len(r.b) {
		r.fail("unexpected end")
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

// leb reads an unsigned or signed LEB128 of at most maxBytes and returns its
// raw value bits (the caller interprets the sign when needed).
func (r *reader) leb(maxBytes int) uint64 {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail("LEB128 too long")
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.leb(5)) }

// s33 reads a signed 33-bit LEB128 (block types, heap types).
func (r *reader) s33() int64 {
	start := r.off
	v := r.leb(5)
	n := r.off - start
	shift := 7 * n
	if shift < 64 && r.err == nil && r.b[r.off-1]&0x40 != 0 {
		v |= ^uint64(0) << shift
	}
	return int64(v)
}

func (r *reader) name() {
	n := r.u32()
	r.bytes(int(n))
}

// valtype skips a value type (numeric, vector, reference, or a typed
// reference 0x63/0x64 followed by a heap type).
func (r *reader) valtype() {
	c := r.byte()
	switch c {
	case valI32, valI64, valF32, valF64, valV128, valFuncref, valExternref:
	case valRefNull, valRef:
		r.s33()
	default:
		r.fail("unknown value type 0x%x", c)
	}
}

func (r *reader) blocktype() {
	v := r.s33()
	if v == valRefNull-0x80 || v == valRef-0x80 { // a typed reference result: a heap type follows
		r.s33()
	}
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(10) // offset (u32, or u64 with memory64)
}

func (r *reader) limits() {
	flags := r.byte()
	if flags > 7 {
		r.fail("unknown limits flags 0x%x", flags)
		return
	}
	r.leb(10)
	if flags&1 != 0 {
		r.leb(10)
	}
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Section ids.
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElement  = 9
	secCode     = 10
	secData     = 11
	secDataCnt  = 12
)

// Import kinds.
const (
	importFunc   = 0x00
	importTable  = 0x01
	importMemory = 0x02
	importGlobal = 0x03
	importTag    = 0x04
)

// Value types, the function type form, and the empty block type.
const (
	valI32       = 0x7f
	valI64       = 0x7e
	valF32       = 0x7d
	valF64       = 0x7c
	valV128      = 0x7b
	valFuncref   = 0x70
	valExternref = 0x6f
	valRefNull   = 0x63 // (ref null ht), a heap type follows
	valRef       = 0x64 // (ref ht), a heap type follows
	formFunc     = 0x60
	blockEmpty   = 0x40
)

// Opcodes, named as in the specification (and wazero's internal/wasm).
// A range is named by its first and last opcode.
const (
	opUnreachable        = 0x00
	opNop                = 0x01
	opBlock              = 0x02
	opLoop               = 0x03
	opIf                 = 0x04
	opElse               = 0x05
	opTry                = 0x06 // legacy exception handling
	opCatch              = 0x07
	opThrow              = 0x08
	opRethrow            = 0x09
	opThrowRef           = 0x0a
	opEnd                = 0x0b
	opBr                 = 0x0c
	opBrIf               = 0x0d
	opBrTable            = 0x0e
	opReturn             = 0x0f
	opCall               = 0x10
	opCallIndirect       = 0x11
	opReturnCall         = 0x12
	opReturnCallIndirect = 0x13
	opCallRef            = 0x14
	opReturnCallRef      = 0x15
	opDelegate           = 0x18
	opCatchAll           = 0x19
	opDrop               = 0x1a
	opSelect             = 0x1b
	opSelectT            = 0x1c
	opTryTable           = 0x1f
	opLocalGet           = 0x20
	opLocalSet           = 0x21
	opLocalTee           = 0x22
	opGlobalGet          = 0x23
	opGlobalSet          = 0x24
	opTableGet           = 0x25
	opTableSet           = 0x26
	opI32Load            = 0x28 // the loads and stores, each with a memarg, ...
	opI64Store32         = 0x3e // ... up to this one
	opMemorySize         = 0x3f
	opMemoryGrow         = 0x40
	opI32Const           = 0x41
	opI64Const           = 0x42
	opF32Const           = 0x43
	opF64Const           = 0x44
	opI32Eqz             = 0x45 // the numeric instructions without immediates, ...
	opI32Add             = 0x6a
	opI32And             = 0x71
	opI64Extend32S       = 0xc4 // ... up to this one
	opRefNull            = 0xd0
	opRefIsNull          = 0xd1
	opRefFunc            = 0xd2
	opRefEq              = 0xd3
	opRefAsNonNull       = 0xd4
	opBrOnNull           = 0xd5
	opBrOnNonNull        = 0xd6
	opMiscPrefix         = 0xfc // saturating truncation, bulk memory and tables
	opVecPrefix          = 0xfd // SIMD
	opAtomicPrefix       = 0xfe // threads
)

// Sub-opcodes after opMiscPrefix.
const (
	miscI64TruncSatF64U = 7 // 0 to 7: the saturating truncations, no immediates
	miscMemoryInit      = 8
	miscDataDrop        = 9
	miscMemoryCopy      = 10
	miscMemoryFill      = 11
	miscTableInit       = 12
	miscElemDrop        = 13
	miscTableCopy       = 14
	miscTableGrow       = 15
	miscTableSize       = 16
	miscTableFill       = 17
)

// Sub-opcodes after opVecPrefix.
const (
	vecV128Store           = 11 // 0 to 11: the loads and stores, with a memarg
	vecV128Const           = 12 // 16 bytes
	vecI8x16Shuffle        = 13 // 16 lane indices
	vecI8x16ExtractLaneS   = 21 // 21 to 34: extract and replace lane, a lane index
	vecF64x2ReplaceLane    = 34
	vecV128Load8Lane       = 84 // 84 to 91: load and store lane, a memarg and a lane index
	vecV128Store64Lane     = 91
	vecV128Load32Zero      = 92    // a memarg
	vecV128Load64Zero      = 93    // a memarg
	vecI32x4RelaxedDotLast = 0x113 // the last sub-opcode; the rest have no immediates
)

// Sub-opcodes after opAtomicPrefix.
const (
	atomicFence = 0x03 // a reserved byte; every other one has a memarg
	atomicLast  = 0x4e
)

// try_table catch clause kinds.
const (
	catchTag    = 0x00 // tag, label
	catchTagRef = 0x01 // tag, label
	catchAll    = 0x02 // label
	catchAllRef = 0x03 // label
)

// immediates[op] reads past the immediates of opcode op; nil for an opcode
// the decoder does not know.
var immediates = func() (t [256]func(*reader)) {
	set := func(f func(*reader), ops ...byte) {
		for _, op := range ops {
			t[op] = f
		}
	}
	span := func(f func(*reader), first, last byte) {
		for op := int(first); op <= int(last); op++ {
			t[op] = f
		}
	}
	none := func(*reader) {}
	set(none, opUnreachable, opNop, opElse, opThrowRef, opEnd, opReturn, opCatchAll, opDrop, opSelect,
		opRefIsNull, opRefEq, opRefAsNonNull)
	span(none, opI32Eqz, opI64Extend32S)
	set((*reader).blocktype, opBlock, opLoop, opIf, opTry)
	set((*reader).index, opCatch, opThrow, opRethrow, opBr, opBrIf, opCall, opReturnCall, opCallRef,
		opReturnCallRef, opDelegate, opMemorySize, opMemoryGrow, opRefFunc, opBrOnNull, opBrOnNonNull)
	span((*reader).index, opLocalGet, opTableSet)
	set((*reader).twoIndices, opCallIndirect, opReturnCallIndirect)
	set((*reader).brTable, opBrTable)
	set((*reader).selectTypes, opSelectT)
	set((*reader).tryTable, opTryTable)
	span((*reader).memarg, opI32Load, opI64Store32)
	set(func(r *reader) { r.leb(5) }, opI32Const)
	set(func(r *reader) { r.leb(10) }, opI64Const)
	set(func(r *reader) { r.bytes(4) }, opF32Const)
	set(func(r *reader) { r.bytes(8) }, opF64Const)
	set(func(r *reader) { r.s33() }, opRefNull)
	set((*reader).misc, opMiscPrefix)
	set((*reader).vec, opVecPrefix)
	set((*reader).atomic, opAtomicPrefix)
	return t
}()

// index reads one index (function, local, global, table, type, tag) or
// label depth.
func (r *reader) index() { r.u32() }

func (r *reader) twoIndices() {
	r.u32()
	r.u32()
}

func (r *reader) brTable() {
	for k := r.u32(); k > 0 && r.err == nil; k-- {
		r.u32()
	}
	r.u32()
}

func (r *reader) selectTypes() {
	for k := r.u32(); k > 0 && r.err == nil; k-- {
		r.valtype()
	}
}

func (r *reader) tryTable() {
	r.blocktype()
	for k := r.u32(); k > 0 && r.err == nil; k-- {
		switch kind := r.byte(); kind {
		case catchTag, catchTagRef:
			r.twoIndices()
		case catchAll, catchAllRef:
			r.u32()
		default:
			r.fail("unknown catch kind 0x%x", kind)
		}
	}
}

func (r *reader) misc() {
	switch sub := r.u32(); sub {
	case miscMemoryInit, miscMemoryCopy, miscTableInit, miscTableCopy:
		r.twoIndices()
	case miscDataDrop, miscMemoryFill, miscElemDrop, miscTableGrow, miscTableSize, miscTableFill:
		r.u32()
	default:
		if sub > miscI64TruncSatF64U {
			r.fail("unknown 0xfc opcode %d", sub)
		}
	}
}

func (r *reader) vec() {
	switch sub := r.u32(); {
	case sub <= vecV128Store, sub == vecV128Load32Zero, sub == vecV128Load64Zero:
		r.memarg()
	case sub == vecV128Const, sub == vecI8x16Shuffle:
		r.bytes(16)
	case sub >= vecI8x16ExtractLaneS && sub <= vecF64x2ReplaceLane:
		r.byte()
	case sub >= vecV128Load8Lane && sub <= vecV128Store64Lane:
		r.memarg()
		r.byte()
	case sub > vecI32x4RelaxedDotLast:
		r.fail("unknown 0xfd opcode %d", sub)
	}
}

func (r *reader) atomic() {
	switch sub := r.u32(); {
	case sub == atomicFence:
		r.byte()
	case sub <= atomicLast:
		r.memarg()
	default:
		r.fail("unknown 0xfe opcode %d", sub)
	}
}

// instr reads one instruction and returns its opcode.
func (r *reader) instr() byte {
	op := r.byte()
	if r.err != nil {
		return op
	}
	if skip := immediates[op]; skip != nil {
		skip(r)
	} else {
		r.fail("unknown opcode 0x%x", op)
	}
	return op
}

type section struct {
	id      byte
	payload []byte
}

// magic is the preamble of a core WebAssembly 1.0 binary.
var magic = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// sections splits a module into its sections.
func sections(bin []byte) ([]section, error) {
	r := &reader{b: bin}
	if !bytes.Equal(r.bytes(len(magic)), magic) {
		return nil, fmt.Errorf("%w: not a core WebAssembly 1.0 binary", errNotInstrumentable)
	}
	var secs []section
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		n := r.u32()
		p := r.bytes(int(n))
		secs = append(secs, section{id, p})
	}
	return secs, r.err
}

// layout is what the rewrite needs to know of a module besides its code.
type layout struct {
	params   []int  // by type index: the function type's parameter count
	tickable []bool // by type index: the type is (i32, i32) -> i32, input_buffer's
	tick     int    // the function index of the tick import; -1 without
	tickType int    // the tick import's type index
	imported int    // imported functions
	bodyType []int  // by defined function: its type index
	globals  int    // imported and defined globals: the index of the call counter
}

// readLayout reads the type, import and function sections.
func readLayout(secs []section) (*layout, error) {
	l := &layout{tick: -1}
	for _, s := range secs {
		r := &reader{b: s.payload}
		switch s.id {
		case secType:
			l.readTypes(r)
		case secImport:
			l.readImports(r)
		case secFunction:
			l.readFunctions(r)
		case secGlobal:
			l.globals += int(r.u32())
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return l, nil
}

func (l *layout) readTypes(r *reader) {
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		if form := r.byte(); form != formFunc {
			r.fail("type form 0x%x is not a function type", form)
			return
		}
		// tickable: (i32, i32) -> i32, input_buffer's type.
		i32s := 0
		np := r.u32()
		for k := np; k > 0 && r.err == nil; k-- {
			if r.off < len(r.b) && r.b[r.off] == valI32 {
				i32s++
			}
			r.valtype()
		}
		nr := r.u32()
		for k := nr; k > 0 && r.err == nil; k-- {
			if r.off < len(r.b) && r.b[r.off] == valI32 {
				i32s++
			}
			r.valtype()
		}
		l.params = append(l.params, int(np))
		l.tickable = append(l.tickable, np == 2 && nr == 1 && i32s == 3)
	}
}

func (l *layout) readImports(r *reader) {
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		mod := string(r.bytes(int(r.u32())))
		name := string(r.bytes(int(r.u32())))
		switch kind := r.byte(); kind {
		case importFunc:
			t := int(r.u32())
			if mod == abi.ImportModule && name == abi.ImportInputBuffer {
				l.tick, l.tickType = l.imported, t
			}
			l.imported++
		case importTable:
			r.valtype()
			r.limits()
		case importMemory:
			r.limits()
		case importGlobal:
			r.valtype()
			r.byte() // mutability
			l.globals++
		case importTag:
			r.byte() // attribute
			r.u32()
		default:
			r.fail("unknown import kind 0x%x", kind)
		}
	}
}

func (l *layout) readFunctions(r *reader) {
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		t := int(r.u32())
		if t >= len(l.params) {
			r.fail("function type %d out of range", t)
			return
		}
		l.bodyType = append(l.bodyType, t)
	}
}

// instrument returns bin with the step counter (see above). It fails on
// anything it does not fully understand.
func instrument(bin []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: %v", errNotInstrumentable, r)
		}
	}()
	secs, err := sections(bin)
	if err != nil {
		return nil, err
	}
	l, err := readLayout(secs)
	if err != nil {
		return nil, err
	}
	if l.tick < 0 {
		return nil, fmt.Errorf("%w: no %s.%s import to tick through", errNotInstrumentable, abi.ImportModule, abi.ImportInputBuffer)
	}
	if l.tickType >= len(l.tickable) || !l.tickable[l.tickType] {
		// The ABI check refuses such a module anyway; the tick's call
		// would not even be valid code.
		return nil, fmt.Errorf("%w: %s.%s is not imported as (i32, i32) -> i32", errNotInstrumentable, abi.ImportModule, abi.ImportInputBuffer)
	}
	out = append(out, magic...)
	added := false
	for _, s := range secs {
		switch {
		case s.id == secGlobal && added:
			// A second global section, or one after a section that must
			// follow it: not a valid module, and the counter's index
			// would be wrong.
			return nil, fmt.Errorf("%w: the global section is out of place", errNotInstrumentable)
		case s.id == secGlobal:
			s.payload = appendCounterGlobal(s.payload)
			added = true
		case !added && followsGlobals(s.id):
			out = appendSection(out, secGlobal, appendCounterGlobal(nil))
			added = true
		}
		switch {
		case s.id == secCode:
			if s.payload, err = instrumentCode(s.payload, l); err != nil {
				return nil, err
			}
		case s.id == secCustom && isDWARF(s.payload):
			// DWARF addresses code by offset, and the offsets moved: wrong
			// source lines in stack traces would mislead. (The "name"
			// section is by index and stays.)
			continue
		}
		out = appendSection(out, s.id, s.payload)
	}
	if !added {
		out = appendSection(out, secGlobal, appendCounterGlobal(nil))
	}
	return out, nil
}

// appendSection appends a section with its id and size.
func appendSection(out []byte, id byte, payload []byte) []byte {
	out = append(out, id)
	out = appendULEB(out, uint64(len(payload)))
	return append(out, payload...)
}

// followsGlobals reports whether a section of this id comes after the
// global section in a module (the export, start, element, data count,
// code and data sections; custom sections go anywhere).
func followsGlobals(id byte) bool {
	switch id {
	case secExport, secStart, secElement, secDataCnt, secCode, secData:
		return true
	}
	return false
}

// appendCounterGlobal returns the payload of a global section (nil: none
// yet) with the call counter appended: (global (mut i32) (i32.const 0)),
// after every existing global.
func appendCounterGlobal(payload []byte) []byte {
	counter := []byte{valI32, 1, opI32Const, 0, opEnd}
	if payload == nil {
		return append([]byte{1}, counter...)
	}
	r := &reader{b: payload}
	n := r.u32()
	out := appendULEB(nil, uint64(n)+1)
	out = append(out, payload[r.off:]...)
	return append(out, counter...)
}

// The code the rewrite inserts, for the step counter in global g and its
// scratch local l:
//
//	entry (at a body's head):  global.get g; i32.const 1; i32.add; local.tee l; tick if due
//	step (after a loop's type): local.get l; i32.const 1; i32.add; local.tee l; tick if due
//	save (before a call or an exit): local.get l; global.set g
//	load (after a call):             global.get g; local.set l

func entryCode(dst []byte, g, l, tick uint32) []byte { return countStep(dst, opGlobalGet, g, l, tick) }

func stepCode(dst []byte, l, tick uint32) []byte { return countStep(dst, opLocalGet, l, l, tick) }

// countStep appends one step: the counter read by get (global.get or
// local.get) from index from, plus one, kept in local l, tick if due.
func countStep(dst []byte, get byte, from, l, tick uint32) []byte {
	dst = append(dst, get)
	dst = appendULEB(dst, uint64(from))
	dst = append(dst, opI32Const, 1, opI32Add, opLocalTee)
	dst = appendULEB(dst, uint64(l))
	return tickIfDue(dst, tick)
}

func saveCode(dst []byte, g, l uint32) []byte {
	dst = append(dst, opLocalGet)
	dst = appendULEB(dst, uint64(l))
	dst = append(dst, opGlobalSet)
	return appendULEB(dst, uint64(g))
}

func loadCode(dst []byte, g, l uint32) []byte {
	dst = append(dst, opGlobalGet)
	dst = appendULEB(dst, uint64(g))
	dst = append(dst, opLocalSet)
	return appendULEB(dst, uint64(l))
}

// tickIfDue appends, for the counter's value on the stack:
//
//	i32.const fuelPeriod-1; i32.and; i32.eqz
//	if; i32.const -1; i32.const 0; call tick; drop; end
func tickIfDue(dst []byte, tick uint32) []byte {
	dst = append(dst, opI32Const)
	dst = appendSLEB(dst, fuelPeriod-1)
	dst = append(dst, opI32And, opI32Eqz, opIf, blockEmpty, opI32Const)
	dst = appendSLEB(dst, -1) // tickPtr
	dst = append(dst, opI32Const, 0, opCall)
	dst = appendULEB(dst, uint64(tick))
	return append(dst, opDrop, opEnd)
}

// instrumentCode rewrites the code section's bodies.
func instrumentCode(payload []byte, l *layout) ([]byte, error) {
	r := &reader{b: payload}
	n := r.u32()
	if int(n) != len(l.bodyType) {
		return nil, fmt.Errorf("%w: %d bodies for %d functions", errNotInstrumentable, n, len(l.bodyType))
	}
	out := appendULEB(nil, uint64(n))
	var body []byte
	for i := 0; i < int(n) && r.err == nil; i++ {
		size := r.u32()
		fb := r.bytes(int(size))
		if r.err != nil {
			break
		}
		var err error
		body, err = instrumentBody(body[:0], fb, l.params[l.bodyType[i]], uint32(l.globals), uint32(l.tick))
		if err != nil {
			return nil, err
		}
		out = appendULEB(out, uint64(len(body)))
		out = append(out, body...)
	}
	if r.err == nil && r.off != len(r.b) {
		r.fail("trailing bytes in the code section")
	}
	return out, r.err
}

// maxLocals bounds the parameters and locals of a body that is
// instrumented.
const maxLocals = 50000

// localDecls reads a body's groups of local declarations and returns the
// number of parameters and locals: the index of the counter local.
func (r *reader) localDecls(groups uint32, nparams int) uint32 {
	total := uint64(nparams)
	for n := groups; n > 0 && r.err == nil; n-- {
		total += uint64(r.u32())
		r.valtype()
	}
	if r.err == nil && total >= maxLocals {
		r.fail("too many locals")
	}
	return uint32(total)
}

// instrumentBody copies one function body with one more i32 local (the
// step counter's scratch) and the entry, step, save and load code (see
// entryCode). Code that names the new local or global fails, as do the
// control instructions whose exits it does not follow.
func instrumentBody(out, fb []byte, nparams int, g, tick uint32) ([]byte, error) {
	r := &reader{b: fb}
	groups := r.u32()
	decls := r.off
	l := r.localDecls(groups, nparams)
	if r.err != nil {
		return nil, r.err
	}
	out = appendULEB(out, uint64(groups)+1)
	out = append(out, fb[decls:r.off]...)
	out = append(out, 1, valI32) // (local i32)
	out = entryCode(out, g, l, tick)
	step, save, load := stepCode(nil, l, tick), saveCode(nil, g, l), loadCode(nil, g, l)
	depth := uint32(0) // blocks open: a branch to label depth leaves the function
	for r.off < len(r.b) {
		start := r.off
		op := r.instr()
		if r.err != nil {
			break
		}
		in := fb[start:r.off]
		switch op {
		case opBlock, opIf:
			depth++
		case opLoop:
			depth++
			out = append(append(out, in...), step...)
			continue
		case opEnd:
			if depth == 0 { // the function's own end
				out = append(out, save...)
			}
			depth--
		case opReturn:
			out = append(out, save...)
		case opBr, opBrIf, opBrTable:
			if branchesTo(in, depth) {
				out = append(out, save...)
			}
		case opCall, opCallIndirect:
			out = append(append(append(out, save...), in...), load...)
			continue
		case opTry, opCatch, opCatchAll, opDelegate, opThrow, opRethrow, opThrowRef, opTryTable,
			opReturnCall, opReturnCallIndirect, opCallRef, opReturnCallRef, opBrOnNull, opBrOnNonNull:
			r.off = start
			r.fail("opcode 0x%x (exceptions, tail calls or typed function references) is not supported in a sandboxed plugin", op)
			continue
		case opLocalGet, opLocalSet, opLocalTee, opGlobalGet, opGlobalSet:
			ir := &reader{b: in[1:]}
			idx, limit := ir.u32(), l
			if op == opGlobalGet || op == opGlobalSet {
				limit = g
			}
			if idx >= limit {
				r.off = start
				r.fail("opcode 0x%x names index %d, past the function's locals or the module's globals", op, idx)
				continue
			}
		}
		out = append(out, in...)
	}
	return out, r.err
}

// branchesTo reports whether the br, br_if or br_table instruction in may
// branch to label depth (counted from the innermost block).
func branchesTo(in []byte, depth uint32) bool {
	r := &reader{b: in[1:]}
	if in[0] != opBrTable {
		return r.u32() == depth
	}
	for k := r.u32() + 1; k > 0 && r.err == nil; k-- { // the labels, then the default
		if r.u32() == depth {
			return true
		}
	}
	return false
}

// isDWARF reports whether a custom section's payload is a DWARF section
// (its name starts with ".debug_").
func isDWARF(payload []byte) bool {
	r := &reader{b: payload}
	n := r.u32()
	name := r.bytes(int(n))
	return r.err == nil && bytes.HasPrefix(name, []byte(".debug_"))
}
