package main

import (
	"bytes"
	"testing"
)

// sdssplitargs is a line-for-line port of Redis's sdssplitargs (sds.c) on a
// C string (it stops at the first NUL).
func sdssplitargs(line []byte) ([][]byte, bool) {
	at := func(k int) byte {
		if k < len(line) {
			return line[k]
		}
		return 0
	}
	cisspace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	p := 0
	var argv [][]byte
	for {
		for at(p) != 0 && cisspace(at(p)) {
			p++
		}
		if at(p) == 0 {
			return argv, true
		}
		inq, insq, done := false, false, false
		cur := []byte{}
		for !done {
			c := at(p)
			if inq {
				if c == '\\' && at(p+1) == 'x' && isHex(at(p+2)) && isHex(at(p+3)) {
					cur = append(cur, hexVal(at(p+2))<<4|hexVal(at(p+3)))
					p += 3
				} else if c == '\\' && at(p+1) != 0 {
					p++
					e := at(p)
					switch e {
					case 'n':
						e = '\n'
					case 'r':
						e = '\r'
					case 't':
						e = '\t'
					case 'b':
						e = '\b'
					case 'a':
						e = '\a'
					}
					cur = append(cur, e)
				} else if c == '"' {
					if at(p+1) != 0 && !cisspace(at(p+1)) {
						return nil, false
					}
					done = true
				} else if c == 0 {
					return nil, false
				} else {
					cur = append(cur, c)
				}
			} else if insq {
				if c == '\\' && at(p+1) == '\'' {
					p++
					cur = append(cur, '\'')
				} else if c == '\'' {
					if at(p+1) != 0 && !cisspace(at(p+1)) {
						return nil, false
					}
					done = true
				} else if c == 0 {
					return nil, false
				} else {
					cur = append(cur, c)
				}
			} else {
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, c)
				}
			}
			if at(p) != 0 {
				p++
			}
		}
		argv = append(argv, cur)
	}
}

// TestFirstArgMatchesSdssplitargs compares firstArg with a port of Redis's
// sdssplitargs on every line of up to 6 bytes (a quoted hex escape, "\x4A",
// is 6) from an alphabet of the bytes that matter, as the plugin sees it
// (Redis strips one '\r' before the '\n'; the plugin's line keeps it).
func TestFirstArgMatchesSdssplitargs(t *testing.T) {
	alpha := []byte{'A', '"', '\'', '\\', 'x', '4', ' ', '\t', '\r', '\v', 0}
	var line []byte
	bad := 0
	var rec func(n int)
	check := func() {
		aux := line
		if len(aux) > 0 && aux[len(aux)-1] == '\r' {
			aux = aux[:len(aux)-1]
		}
		argv, ok := sdssplitargs(aux)
		if !ok || len(argv) == 0 {
			return // Redis answers with an error or runs nothing
		}
		arg, rest, aok := firstArg(line)
		if !aok || !bytes.Equal(arg, argv[0]) {
			if bad++; bad < 20 {
				t.Errorf("line %q: redis argv[0] %q, firstArg %q ok=%v", line, argv[0], arg, aok)
			}
			return
		}
		if len(argv) > 1 {
			sub, _, sok := firstArg(rest)
			if !sok || !bytes.Equal(sub, argv[1]) {
				if bad++; bad < 20 {
					t.Errorf("line %q: redis argv[1] %q, sub %q ok=%v", line, argv[1], sub, sok)
				}
			}
		}
	}
	rec = func(n int) {
		check()
		if n == 0 {
			return
		}
		for _, c := range alpha {
			line = append(line, c)
			rec(n - 1)
			line = line[:len(line)-1]
		}
	}
	rec(6)
}
