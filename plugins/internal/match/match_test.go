package match

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// reference replaces in one pass over the whole input, leftmost match first,
// first pattern in order at one position.
func reference(in []byte, pats, repl [][]byte, fold bool) ([]byte, int) {
	var out []byte
	n := 0
	for i := 0; i < len(in); {
		hit := -1
		for r, p := range pats {
			if i+len(p) <= len(in) && (bytes.Equal(in[i:i+len(p)], p) || fold && bytes.EqualFold(in[i:i+len(p)], p)) {
				hit = r
				break
			}
		}
		if hit < 0 {
			out = append(out, in[i])
			i++
			continue
		}
		n++
		if hit < len(repl) {
			out = append(out, repl[hit]...)
		}
		i += len(pats[hit])
	}
	return out, n
}

func feedAll(m *Matcher, chunks [][]byte, repl [][]byte) ([]byte, int) {
	var st State
	var out []byte
	n := 0
	for i, c := range chunks {
		r := m.Feed(&st, c, i == len(chunks)-1, repl)
		out = append(out, r.Out...)
		n += r.Matches
		if r.Unchanged && !bytes.Equal(r.Out, c) {
			panic("Unchanged but different")
		}
	}
	return out, n
}

func TestChunkingDoesNotMatter(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alpha := []byte("abAB")
	word := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[r.IntN(len(alpha))]
		}
		return b
	}
	for iter := 0; iter < 3000; iter++ {
		fold := iter%2 == 1
		var pats, repl [][]byte
		for range 1 + r.IntN(3) {
			pats = append(pats, word(1+r.IntN(4)))
			repl = append(repl, word(r.IntN(5)))
		}
		if iter%5 == 0 {
			repl = nil // deletion
		}
		in := word(r.IntN(60))
		want, wantN := reference(in, pats, repl, fold)
		// random chunking, including empty chunks and a final empty one
		var chunks [][]byte
		rest := in
		for len(rest) > 0 {
			k := r.IntN(min(len(rest), 7) + 1)
			chunks = append(chunks, rest[:k])
			rest = rest[k:]
		}
		chunks = append(chunks, nil)
		m := New(pats, fold)
		got, gotN := feedAll(m, chunks, repl)
		if !bytes.Equal(got, want) || gotN != wantN {
			t.Fatalf("pats %q repl %q fold %v in %q chunks %q:\n got %q (%d)\nwant %q (%d)", pats, repl, fold, in, chunks, got, gotN, want, wantN)
		}
	}
}

func TestUnchangedNeedsNoCopy(t *testing.T) {
	m := New([][]byte{[]byte("secret")}, false)
	var st State
	data := []byte("nothing to see here\n")
	r := m.Feed(&st, data, false, nil)
	if !r.Unchanged || &r.Out[0] != &data[0] || st.Pending() != 0 {
		t.Fatalf("got %+v pending %d", r, st.Pending())
	}
	r = m.Feed(&st, []byte("top sec"), false, nil)
	if r.Unchanged || string(r.Out) != "top " || st.Pending() != 3 {
		t.Fatalf("got %+v %q pending %d", r, r.Out, st.Pending())
	}
	r = m.Feed(&st, []byte("ret!"), false, nil)
	if string(r.Out) != "!" || r.Matches != 1 || r.First != 0 {
		t.Fatalf("got %+v %q", r, r.Out)
	}
}

func TestSteadyStateAllocatesNothing(t *testing.T) {
	m := New([][]byte{[]byte("foo"), []byte("barbaz")}, true)
	repl := [][]byte{[]byte("FOOOO"), nil}
	var st State
	data := bytes.Repeat([]byte("xx foo yy BARBAZ zz ba"), 100)
	m.Feed(&st, data, false, repl)
	allocs := testing.AllocsPerRun(100, func() { m.Feed(&st, data, false, repl) })
	if allocs != 0 {
		t.Fatalf("%v allocs per Feed", allocs)
	}
}

func TestIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for iter := 0; iter < 20000; iter++ {
		s := make([]byte, r.IntN(40))
		for i := range s {
			s[i] = "ab\x00\xff\x80\x7f"[r.IntN(6)]
		}
		p := make([]byte, 1+r.IntN(4))
		for i := range p {
			p[i] = "ab\x00\xff\x80\x7f"[r.IntN(6)]
		}
		if got, want := index(s, p), bytes.Index(s, p); got != want {
			t.Fatalf("index(%q, %q) = %d, want %d", s, p, got, want)
		}
	}
}

func TestLowerASCII(t *testing.T) {
	all := make([]byte, 256+13)
	for i := range all {
		all[i] = byte(i)
	}
	for start := range 9 {
		in := all[start:]
		want := make([]byte, len(in))
		for i, c := range in {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			want[i] = c
		}
		if got := lowerASCII([]byte("x"), in); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("from %d: got %q", start, got)
		}
	}
}
