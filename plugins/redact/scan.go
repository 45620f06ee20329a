package main

// Card numbers: 13 to 19 digits.
const (
	minCard = 13
	maxCard = 19
)

// scan redacts the next bytes of a stream. It returns what to pass on, how
// many secrets it masked, and whether that is exactly data (nothing masked,
// nothing held back), so the caller can forward data as it is.
func (p *plugin) scan(st *stream, data []byte, end bool, buf *buffers) (out []byte, matches int, unchanged bool) {
	work := data
	fresh := len(st.pend) == 0
	if !fresh {
		buf.work = append(append(buf.work[:0], st.pend...), data...)
		work = buf.work
	}
	out = buf.out[:0]
	copied := false // out holds the redacted work[:vstart]
	vstart := 0     // start of the bytes passed on as they are
	prev := st.prev
	hold := len(work)
	i := 0
loop:
	for i < len(work) {
		b := work[i]
		if st.inToken && st.spaces {
			if b == ' ' || b == '\t' {
				prev = b
				i++
				continue
			}
			st.spaces = false
		}
		if st.inToken {
			if tokenByte(b) {
				j := i + 1
				for j < len(work) && tokenByte(work[j]) {
					j++
				}
				out, copied = append(out, work[vstart:i]...), true
				if p.preserve {
					out = appendMask(out, p.mask, j-i)
				} else if !st.replaced {
					out = append(out, p.repl...)
					st.replaced = true
				}
				prev, i, vstart = work[j-1], j, j
				continue
			}
			st.inToken = false
		}
		for k := range p.pats {
			pt := &p.pats[k]
			switch matchAt(work[i:], pt) {
			case partial:
				if end {
					continue
				}
				hold = i // more bytes decide: the first pattern in order wins
				break loop
			case full:
				out, copied = append(out, work[vstart:i]...), true
				matches++
				n := len(pt.b)
				switch {
				case pt.prefix:
					out = append(out, work[i:i+n]...)
					st.inToken, st.replaced, st.spaces = true, false, pt.spaces
				case p.preserve:
					out = appendMask(out, p.mask, n)
				default:
					out = append(out, p.repl...)
				}
				i += n
				prev, vstart = work[i-1], i
				continue loop
			}
		}
		if p.cards && isDigit(b) && !isAlnum(prev) {
			n, skip, decided := cardAt(work[i:], end)
			if !decided {
				hold = i
				break loop
			}
			if n == 0 {
				// No card starts here: pass the first group of digits;
				// one may start at the next group.
				prev = work[i+skip-1]
				i += skip
				continue
			}
			out, copied = append(out, work[vstart:i]...), true
			matches++
			if p.preserve {
				out = p.maskCard(out, work[i:i+n], countDigits(work[i:i+n]))
			} else {
				out = append(out, p.repl...)
			}
			vstart = i + n
			prev = work[i+n-1]
			i += n
			continue
		}
		prev = b
		i++
	}
	st.prev = prev
	if hold < len(work) {
		st.pend = append(st.pend[:0], work[hold:]...)
	} else {
		st.pend = st.pend[:0]
	}
	if !copied {
		return work[vstart:hold], 0, fresh && hold == len(work)
	}
	out = append(out, work[vstart:hold]...)
	buf.out = out
	return out, matches, false
}

type match int

const (
	none match = iota
	partial
	full
)

// matchAt reports whether w starts with the pattern (full), is a proper
// prefix of it (partial: more bytes decide), or neither.
func matchAt(w []byte, pt *pattern) match {
	if len(w) == 0 {
		return none
	}
	n := min(len(w), len(pt.b))
	for k := 0; k < n; k++ {
		c := w[k]
		if pt.fold {
			c = lowerByte(c)
		}
		if c != pt.b[k] {
			return none
		}
	}
	if n < len(pt.b) {
		return partial
	}
	return full
}

// tokenByte: the characters of an RFC 6750 token (b64token and its '=').
func tokenByte(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// cardAt finds the card number at the start of w (a digit with no letter
// or digit before it): the longest run of digits with single spaces or
// dashes between them, ending at the end of a group of digits that no
// letter or digit follows ("4111 1111 1111 1111 5" or "4111111111111111
// 123" holds one: the groups after it are other numbers), with minCard to
// maxCard digits and a valid Luhn sum. n is its length (0: none), skip the
// length of the first group of digits (at most maxCard+1 of them), to pass
// when there is none. decided is false when w ends before that is known
// and more bytes may come (not end).
func cardAt(w []byte, end bool) (n, skip int, decided bool) {
	digits := 0
	for k := 0; ; {
		digits++ // w[k] is a digit
		k++
		if digits > maxCard {
			if skip == 0 {
				skip = k
			}
			return n, skip, true
		}
		if k < len(w) && isDigit(w[k]) {
			continue
		}
		if k == len(w) && !end {
			return n, skip, false
		}
		// A group of digits ends at k.
		if skip == 0 {
			skip = k
		}
		if (k == len(w) || !isAlnum(w[k])) && digits >= minCard && luhn(w[:k]) {
			n = k
		}
		if k == len(w) || w[k] != ' ' && w[k] != '-' {
			return n, skip, true
		}
		if k+1 == len(w) {
			return n, skip, end
		}
		if !isDigit(w[k+1]) {
			return n, skip, true
		}
		k++
	}
}

func countDigits(b []byte) int {
	d := 0
	for _, c := range b {
		if isDigit(c) {
			d++
		}
	}
	return d
}

// luhn checks the Luhn sum of the digits in b (separators skipped).
func luhn(b []byte) bool {
	sum, double := 0, false
	for k := len(b) - 1; k >= 0; k-- {
		if !isDigit(b[k]) {
			continue
		}
		d := int(b[k] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// maskCard masks the digits of a card number but its last keepLast,
// keeping the separators.
func (p *plugin) maskCard(out, run []byte, digits int) []byte {
	seen := 0
	for _, c := range run {
		if isDigit(c) {
			seen++
			if seen <= digits-p.keepLast {
				c = p.mask
			}
		}
		out = append(out, c)
	}
	return out
}

func appendMask(out []byte, m byte, n int) []byte {
	for ; n > 0; n-- {
		out = append(out, m)
	}
	return out
}
