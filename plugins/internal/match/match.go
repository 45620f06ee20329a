// Package match finds byte patterns in a stream that arrives in chunks, for
// the replace and deny plugins. A pattern split across chunks is found as if
// the stream had arrived in one piece: the bytes at the end of a chunk that
// could start a pattern are kept back until the next chunk decides.
//
// At one position the first pattern in configuration order that matches
// wins; matching resumes after it (matches never overlap, replacements are
// not scanned again).
package match

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Matcher holds the patterns and the scratch buffers of one plugin instance.
// It is not safe for concurrent use; a plugin instance is called one
// connection at a time, so one Matcher serves all its connections.
type Matcher struct {
	pats   [][]byte // lower-cased when fold
	fold   bool
	maxLen int
	next   []int // per pattern: next occurrence in work at or after pos; -1 none; -2 unknown
	work   []byte
	lower  []byte
	out    []byte
}

// New makes a matcher for pats (each non-empty). With fold, ASCII letters
// match regardless of case.
func New(pats [][]byte, fold bool) *Matcher {
	m := &Matcher{fold: fold, next: make([]int, len(pats))}
	for _, p := range pats {
		if fold {
			p = lowerASCII(nil, p)
		}
		m.pats = append(m.pats, p)
		m.maxLen = max(m.maxLen, len(p))
	}
	return m
}

// State is the per-direction state of one stream: the kept-back tail.
type State struct {
	tail []byte
}

// Pending returns how many bytes are kept back.
func (s *State) Pending() int { return len(s.tail) }

// lowerASCII appends b to dst with ASCII capitals made small, eight bytes
// per loop iteration (loops are what a sandboxed guest pays for).
func lowerASCII(dst, b []byte) []byte {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	n := len(dst)
	dst = append(dst, b...)
	out := dst[n:]
	i := 0
	for ; i+8 <= len(out); i += 8 {
		x := binary.LittleEndian.Uint64(out[i:])
		h := x &^ hi                   // the low 7 bits of each byte
		gtZ := h + (0x7f-'Z')*lo       // high bit set where the byte > 'Z'
		geA := h + (0x80-'A')*lo       // high bit set where the byte >= 'A'
		upper := (geA ^ gtZ) &^ x & hi // 'A'..'Z' and ASCII
		binary.LittleEndian.PutUint64(out[i:], x|upper>>2)
	}
	for ; i < len(out); i++ {
		if c := out[i]; 'A' <= c && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return dst
}

// Result is what Feed decided.
type Result struct {
	// Out is what to pass on now. When Unchanged it is the data given to
	// Feed itself; otherwise it is the matcher's scratch buffer, valid until
	// the next Feed.
	Out []byte
	// Unchanged reports that Out is exactly the data given to Feed: no match
	// and nothing kept back, so the caller may simply forward it.
	Unchanged bool
	// Matches counts the patterns found; First is the index of the first.
	Matches, First int
	// FirstOut is where in Out the first match was (where its replacement
	// starts); meaningful when Matches > 0.
	FirstOut int
}

// Feed processes the next bytes of the stream st. Each match of pattern i
// is replaced by repl[i] (by nothing when repl is nil or shorter). With
// end, nothing follows: every kept-back byte is decided and passed on.
func (m *Matcher) Feed(st *State, data []byte, end bool, repl [][]byte) Result {
	work := data
	if len(st.tail) > 0 {
		m.work = append(append(m.work[:0], st.tail...), data...)
		work = m.work
	}
	search := work
	if m.fold {
		m.lower = lowerASCII(m.lower[:0], work)
		search = m.lower
	}
	// safe: bytes before it cannot start a match that needs more data.
	safe := len(work)
	if !end {
		safe = m.partial(search)
	}
	for i := range m.next {
		m.next[i] = -2
	}
	res := Result{First: -1}
	out := m.out[:0]
	pos := 0
	for {
		at, rule := m.find(search, pos, safe)
		if at < 0 {
			break
		}
		out = append(out, work[pos:at]...)
		if res.Matches == 0 {
			res.FirstOut = len(out)
		}
		if rule < len(repl) {
			out = append(out, repl[rule]...)
		}
		if res.Matches == 0 {
			res.First = rule
		}
		res.Matches++
		pos = at + len(m.pats[rule])
	}
	// With no match nothing needs copying; keep the tail for next time.
	if res.Matches == 0 && len(st.tail) == 0 {
		if safe == len(work) {
			return Result{Out: data, Unchanged: true, First: -1}
		}
		st.tail = append(st.tail[:0], work[safe:]...)
		res.Out = work[:safe]
		return res
	}
	if safe < pos {
		safe = pos // the last match ran into the undecided tail
	}
	out = append(out, work[pos:safe]...)
	// work may be m.work, which st.tail is not: copying is safe.
	st.tail = append(st.tail[:0], work[safe:]...)
	m.out = out
	res.Out = out
	return res
}

// find returns the leftmost match starting in [pos, safe) and its pattern,
// or -1.
func (m *Matcher) find(search []byte, pos, safe int) (at, rule int) {
	at, rule = -1, -1
	for i, p := range m.pats {
		n := m.next[i]
		if n == -2 || (n >= 0 && n < pos) {
			n = -1
			if j := index(search[pos:], p); j >= 0 {
				n = pos + j
			}
			m.next[i] = n
		}
		if n >= 0 && n < safe && (at < 0 || n < at) {
			at, rule = n, i
		}
	}
	return at, rule
}

// partial returns the first position q such that search[q:] is a proper
// prefix of a pattern (a match could start there once more bytes come), or
// len(search).
func (m *Matcher) partial(search []byte) int {
	start := max(0, len(search)-m.maxLen+1)
	for q := start; q < len(search); q++ {
		rest := search[q:]
		for _, p := range m.pats {
			if len(rest) >= len(p) || p[0] != rest[0] {
				continue // cheap test first: calls are dear in a wasm guest
			}
			if bytes.Equal(p[:len(rest)], rest) {
				return q
			}
		}
	}
	return len(search)
}

// index is bytes.Index for a non-empty pattern, with the search for its
// first byte done 8 bytes per loop iteration. In a sandboxed guest every
// loop iteration pays a check (the host's way to interrupt a call), and
// the standard library's wasm IndexByte goes a byte at a time.
func index(s, p []byte) int {
	c := p[0]
	for i := 0; i+len(p) <= len(s); {
		j := indexByte(s[i:len(s)-len(p)+1], c)
		if j < 0 {
			return -1
		}
		i += j
		if bytes.Equal(s[i+1:i+len(p)], p[1:]) {
			return i
		}
		i++
	}
	return -1
}

// indexByte finds c in s eight bytes at a time ("has a zero byte" on the
// XOR with c repeated: the lowest flagged byte is always a true match).
func indexByte(s []byte, c byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	pat := lo * uint64(c)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:]) ^ pat
		if t := (x - lo) &^ x & hi; t != 0 {
			return i + bits.TrailingZeros64(t)/8
		}
	}
	for ; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
