package wasm

import "fmt"

// wazero's compiler takes time that grows with the square of a function's
// control structure, not with the module's size: one function of 100,000
// empty blocks (300 KB) took 40 s to compile on the 2-core machine this
// was measured on, 8,000 loops 12 s, 20,000 nested ifs 8 s, a br_table of
// 100,000 labels 2.4 s (RATIONALE.md, "Why is a module's control structure
// bounded before it is compiled?"). A plugin loads at start and at every
// reload, and nothing interrupts a compile: a small hostile or generated
// module would hold a core for minutes. So the load estimates that work
// first and refuses a module over a budget that grows with its size (so
// that large Go guests of ordinary functions pass) but not with the
// square of its control structure.

// Weights of a function's compile work, calibrated to the times measured:
// per block (block, loop, if, try) squared 1, per nesting depth squared 6,
// per loop squared 50, per br_table label squared 1/10.
const (
	depthWeight = 6
	loopWeight  = 50
	labelDiv    = 10
)

// maxCompileWork and workPerByte bound the sum of the functions' compile
// work: 3e8 (about 1 s of the superlinear part at worst) plus 50 per byte
// of the module, so that a large module of ordinary functions passes
// (standard-Go modules come to about 9 per byte: the built-ins 2.4e7 to
// 2.5e7 for 3 MB, a 17.7 MB one of many standard packages 1.57e8) while a
// small one whose work is concentrated does not.
const (
	maxCompileWork = 300_000_000
	workPerByte    = 50
)

// funcShape is what compileWork counts of one function body.
type funcShape struct {
	blocks, loops, depth, labels uint64
}

func (s funcShape) work() uint64 {
	return s.blocks*s.blocks + depthWeight*s.depth*s.depth + loopWeight*s.loops*s.loops + s.labels*s.labels/labelDiv
}

// checkCompileWork refuses a module whose functions would take the
// compiler superlinear time (see maxCompileWork). A module it cannot parse
// passes: the compiler reports what is wrong with it.
func checkCompileWork(bin []byte) error {
	secs, err := sections(bin)
	if err != nil {
		return nil
	}
	limit := maxCompileWork + workPerByte*uint64(len(bin))
	for _, s := range secs {
		if s.id != secCode {
			continue
		}
		var total, worstWork uint64
		worst, worstAt := funcShape{}, -1
		r := &reader{b: s.payload}
		n := r.u32()
		for i := 0; i < int(n) && r.err == nil; i++ {
			size := r.u32()
			fb := r.bytes(int(size))
			if r.err != nil {
				break
			}
			sh, ok := shapeOf(fb)
			if !ok {
				return nil
			}
			w := sh.work()
			total += w
			if worstAt < 0 || w > worstWork {
				worst, worstAt, worstWork = sh, i, w
			}
			if total > limit {
				if l, err := readLayout(secs); err == nil {
					worstAt += l.imported // the function's index counts the imported ones
				}
				return fmt.Errorf("module too complex to compile in bounded time: its functions' blocks, loops, nesting and br_table labels come to more than the limit of %d units of compile work for its %d bytes (function %d alone: %d blocks, %d of them loops, nested %d deep, %d br_table labels: %d units); the compile time grows with the square of each, so split such functions", limit, len(bin), worstAt, worst.blocks, worst.loops, worst.depth, worst.labels, worstWork)
			}
		}
	}
	return nil
}

// shapeOf counts a function body's blocks, loops, deepest nesting and
// br_table labels; ok is false if it does not parse.
func shapeOf(fb []byte) (sh funcShape, ok bool) {
	r := &reader{b: fb}
	for groups := r.u32(); groups > 0 && r.err == nil; groups-- {
		r.u32()
		r.valtype()
	}
	var depth uint64
	for r.off < len(r.b) && r.err == nil {
		start := r.off
		switch op := r.instr(); op {
		case opBlock, opLoop, opIf, opTry, opTryTable:
			sh.blocks++
			if op == opLoop {
				sh.loops++
			}
			depth++
			sh.depth = max(sh.depth, depth)
		case opEnd:
			if depth > 0 {
				depth--
			}
		case opBrTable:
			if r.err == nil {
				lr := &reader{b: fb[start+1 : r.off]}
				sh.labels += uint64(lr.u32()) + 1
			}
		}
	}
	return sh, r.err == nil
}
