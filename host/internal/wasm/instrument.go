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
// compiled (without that option): every function gets one more i32 local, a
// counter incremented at the head of every loop of the function, and every
// fuelPeriod iterations the guest calls the host ("tick") through its own
// input_buffer import with the reserved arguments (-1, 0). The tick is where
// a call that ran past its deadline is cut off, and, being Go code, where the
// goroutine can be preempted, so the garbage collector is never stalled by a
// spinning guest. Any endless computation has a loop that iterates without
// end in some frame (recursion ends in a stack overflow), and that frame's
// counter ticks. The counter lives in a local (a register), so a loop
// iteration pays an add, an and and a branch.
//
// The rewrite adds no import, function or global, so no index changes: only
// the code section is rewritten (one local per body, the check after each
// loop opcode). Anything the decoder does not know makes instrument fail,
// and the module then runs under wazero's own mechanism.

// fuelPeriod is how many loop iterations of one frame run between two
// ticks; a power of two.
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
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
	case 0x63, 0x64:
		r.s33()
	default:
		r.fail("unknown value type 0x%x", c)
	}
}

func (r *reader) blocktype() {
	v := r.s33()
	if v == -29 || v == -28 { // 0x63 / 0x64: typed reference result
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

type section struct {
	id      byte
	payload []byte
}

// instrument returns bin with the fuel check at the head of every loop (see
// above). It fails on anything it does not fully understand.
func instrument(bin []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: %v", errNotInstrumentable, r)
		}
	}()
	r := &reader{b: bin}
	if !bytes.Equal(r.bytes(8), []byte{0, 'a', 's', 'm', 1, 0, 0, 0}) {
		return nil, fmt.Errorf("%w: not a core WebAssembly 1.0 binary", errNotInstrumentable)
	}
	var secs []section
	for r.off < len(r.b) && r.err == nil {
		id := r.byte()
		n := r.u32()
		p := r.bytes(int(n))
		secs = append(secs, section{id, p})
	}
	if r.err != nil {
		return nil, r.err
	}

	// Imports: the tick function. Types and functions: each body's params.
	tick, funcs := -1, 0
	var params []int   // by type index; -1 for a type that is not a function
	var bodyType []int // by defined function
	for _, s := range secs {
		sr := &reader{b: s.payload}
		switch s.id {
		case 1:
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				if form := sr.byte(); form != 0x60 {
					sr.fail("type form 0x%x is not a function type", form)
					break
				}
				np := sr.u32()
				for k := np; k > 0 && sr.err == nil; k-- {
					sr.valtype()
				}
				for k := sr.u32(); k > 0 && sr.err == nil; k-- {
					sr.valtype()
				}
				params = append(params, int(np))
			}
		case 2:
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				mod := string(sr.bytes(int(sr.u32())))
				name := string(sr.bytes(int(sr.u32())))
				switch kind := sr.byte(); kind {
				case 0x00:
					sr.u32()
					if mod == abi.ImportModule && name == abi.ImportInputBuffer {
						tick = funcs
					}
					funcs++
				case 0x01:
					sr.valtype()
					sr.limits()
				case 0x02:
					sr.limits()
				case 0x03:
					sr.valtype()
					sr.byte()
				case 0x04:
					sr.byte()
					sr.u32()
				default:
					sr.fail("unknown import kind 0x%x", kind)
				}
			}
		case 3:
			for n := sr.u32(); n > 0 && sr.err == nil; n-- {
				t := int(sr.u32())
				if t >= len(params) {
					sr.fail("function type %d out of range", t)
					break
				}
				bodyType = append(bodyType, t)
			}
		}
		if sr.err != nil {
			return nil, sr.err
		}
	}
	if tick < 0 {
		return nil, fmt.Errorf("%w: no %s.%s import to tick through", errNotInstrumentable, abi.ImportModule, abi.ImportInputBuffer)
	}
	for i, s := range secs {
		if s.id != 10 {
			continue
		}
		p, err := instrumentCode(s.payload, bodyType, params, uint32(tick))
		if err != nil {
			return nil, err
		}
		secs[i].payload = p
	}

	out = append(out, bin[:8]...)
	for _, s := range secs {
		if s.id == 0 && isDWARF(s.payload) {
			// DWARF addresses code by offset, and the offsets moved: wrong
			// source lines in stack traces would mislead. (The "name"
			// section is by index and stays.)
			continue
		}
		out = append(out, s.id)
		out = appendULEB(out, uint64(len(s.payload)))
		out = append(out, s.payload...)
	}
	return out, nil
}

// check returns the code inserted after a loop's block type, for the
// counter in local l:
//
//	local.get l; i32.const 1; i32.add; local.tee l
//	i32.const fuelPeriod-1; i32.and; i32.eqz
//	if; i32.const -1; i32.const 0; call tick; drop; end
func check(dst []byte, l, tick uint32) []byte {
	dst = append(dst, 0x20)
	dst = appendULEB(dst, uint64(l))
	dst = append(dst, 0x41, 0x01, 0x6a, 0x22)
	dst = appendULEB(dst, uint64(l))
	dst = append(dst, 0x41)
	dst = appendSLEB(dst, fuelPeriod-1)
	dst = append(dst, 0x71, 0x45, 0x04, 0x40, 0x41, 0x7f, 0x41, 0x00, 0x10)
	dst = appendULEB(dst, uint64(tick))
	return append(dst, 0x1a, 0x0b)
}

// instrumentCode rewrites the code section's bodies.
func instrumentCode(payload []byte, bodyType, params []int, tick uint32) ([]byte, error) {
	r := &reader{b: payload}
	n := r.u32()
	if int(n) != len(bodyType) {
		return nil, fmt.Errorf("%w: %d bodies for %d functions", errNotInstrumentable, n, len(bodyType))
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
		body, err = instrumentBody(body[:0], fb, params[bodyType[i]], tick)
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

// instrumentBody copies one function body with one more i32 local (the
// loop counter) and the check after each loop.
func instrumentBody(out, fb []byte, nparams int, tick uint32) ([]byte, error) {
	r := &reader{b: fb}
	groups := r.u32()
	afterCount := r.off
	counter := uint64(nparams)
	for n := groups; n > 0 && r.err == nil; n-- {
		counter += uint64(r.u32())
		r.valtype()
	}
	if r.err != nil {
		return nil, r.err
	}
	if counter >= 50000 {
		return nil, fmt.Errorf("%w: too many locals", errNotInstrumentable)
	}
	out = appendULEB(out, uint64(groups)+1)
	out = append(out, fb[afterCount:r.off]...)
	out = append(out, 0x01, 0x7f) // (local i32)
	var chk []byte
	for r.off < len(r.b) && r.err == nil {
		start := r.off
		op := r.byte()
		loop := false
		switch {
		case op == 0x03:
			r.blocktype()
			loop = true
		case op == 0x02 || op == 0x04 || op == 0x06:
			r.blocktype()
		case op <= 0x01, op == 0x05, op == 0x0a, op == 0x0b, op == 0x0f, op == 0x19, op == 0x1a, op == 0x1b,
			op >= 0x45 && op <= 0xc4, op == 0xd1, op == 0xd3, op == 0xd4:
		case op == 0x07, op == 0x08, op == 0x09, op == 0x0c, op == 0x0d, op == 0x10, op == 0x12, op == 0x14, op == 0x15,
			op == 0x18, op >= 0x20 && op <= 0x26, op == 0x3f, op == 0x40, op == 0xd2, op == 0xd5, op == 0xd6:
			r.u32()
		case op == 0x0e:
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.u32()
			}
			r.u32()
		case op == 0x11, op == 0x13:
			r.u32()
			r.u32()
		case op == 0x1c:
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.valtype()
			}
		case op == 0x1f: // try_table
			r.blocktype()
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				switch kind := r.byte(); kind {
				case 0x00, 0x01:
					r.u32()
					r.u32()
				case 0x02, 0x03:
					r.u32()
				default:
					r.fail("unknown catch kind 0x%x", kind)
				}
			}
		case op >= 0x28 && op <= 0x3e:
			r.memarg()
		case op == 0x41:
			r.leb(5)
		case op == 0x42:
			r.leb(10)
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op == 0xd0:
			r.s33()
		case op == 0xfc:
			switch sub := r.u32(); {
			case sub <= 7:
			case sub == 8, sub == 10, sub == 12, sub == 14:
				r.u32()
				r.u32()
			case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
				r.u32()
			default:
				r.fail("unknown 0xfc opcode %d", sub)
			}
		case op == 0xfd:
			switch sub := r.u32(); {
			case sub <= 11, sub == 92, sub == 93:
				r.memarg()
			case sub == 12, sub == 13:
				r.bytes(16)
			case sub >= 21 && sub <= 34:
				r.byte()
			case sub >= 84 && sub <= 91:
				r.memarg()
				r.byte()
			case sub <= 0x113:
			default:
				r.fail("unknown 0xfd opcode %d", sub)
			}
		case op == 0xfe:
			switch sub := r.u32(); {
			case sub == 3:
				r.byte()
			case sub <= 0x4e:
				r.memarg()
			default:
				r.fail("unknown 0xfe opcode %d", sub)
			}
		default:
			r.fail("unknown opcode 0x%x", op)
		}
		if r.err != nil {
			break
		}
		out = append(out, fb[start:r.off]...)
		if loop {
			if chk == nil {
				chk = check(nil, uint32(counter), tick)
			}
			out = append(out, chk...)
		}
	}
	return out, r.err
}

// isDWARF reports whether a custom section's payload is a DWARF section
// (its name starts with ".debug_").
func isDWARF(payload []byte) bool {
	r := &reader{b: payload}
	n := r.u32()
	name := r.bytes(int(n))
	return r.err == nil && bytes.HasPrefix(name, []byte(".debug_"))
}
