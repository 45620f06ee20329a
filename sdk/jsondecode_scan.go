// Portions of this file are adapted from Go's encoding/json, Copyright 2010
// The Go Authors. All rights reserved. Use of that source code is governed
// by a BSD-style license that can be found in the LICENSE-go file.

package sdk

import "strconv"

// The syntax check of DecodeConfig: a port of encoding/json's scanner, so
// that a broken config is reported at the same byte and with the same reason
// as encoding/json's Decoder did, without linking encoding/json (and with it
// fmt) into every plugin.

// syntaxError is invalid JSON: msg says what, at byte offset (1-based, the
// count of bytes read including the bad one, as encoding/json counts).
type syntaxError struct {
	msg    string
	offset int64
}

func (e *syntaxError) Error() string { return e.msg }

// errEndsEarly is JSON that ends inside the first value.
var errEndsEarly = &syntaxError{msg: "unexpected end of JSON input"}

// Results of one scanner step.
const (
	scanContinue     = iota // uninteresting byte
	scanBeginLiteral        // end implied by next result != scanContinue
	scanBeginObject         // begin object
	scanObjectKey           // just finished object key (string)
	scanObjectValue         // just finished non-last object value
	scanEndObject           // end object (implies scanObjectValue if possible)
	scanBeginArray          // begin array
	scanArrayValue          // just finished array value
	scanEndArray            // end array (implies scanArrayValue if possible)
	scanSkipSpace           // space byte; can skip; known to be last "continue" result
	scanEnd                 // top-level value ended *before* this byte
	scanError               // hit an error, scanner.err
)

// What the scanner is inside of.
const (
	parseObjectKey   = iota // parsing object key (before colon)
	parseObjectValue        // parsing object value (after colon)
	parseArrayValue         // parsing array value
)

// maxNestingDepth is encoding/json's limit on nested arrays and objects; it
// also bounds the decoder's recursion.
const maxNestingDepth = 10000

// scanner is a state machine fed one byte at a time.
type scanner struct {
	step       func(*scanner, byte) int
	endTop     bool
	parseState []int
	err        *syntaxError
	bytes      int64
}

// scanValue finds the end of the first JSON value in data as
// encoding/json's Decoder does: it returns the length of the value (which
// may be followed by other bytes), a *syntaxError, or errEndsEarly.
func scanValue(data []byte) (int, error) {
	s := &scanner{step: stateBeginValue}
	for i, c := range data {
		s.bytes++
		switch s.step(s, c) {
		case scanEnd:
			return i, nil
		case scanEndObject, scanEndArray:
			if stateEndValue(s, ' ') == scanEnd {
				return i + 1, nil
			}
		case scanError:
			return 0, s.err
		}
	}
	if s.step(s, ' ') == scanEnd {
		return len(data), nil
	}
	return 0, errEndsEarly
}

func (s *scanner) pushParseState(c byte, newParseState int, successState int) int {
	s.parseState = append(s.parseState, newParseState)
	if len(s.parseState) <= maxNestingDepth {
		return successState
	}
	return s.error(c, "exceeded max depth")
}

func (s *scanner) popParseState() {
	n := len(s.parseState) - 1
	s.parseState = s.parseState[0:n]
	if n == 0 {
		s.step = stateEndTop
		s.endTop = true
	} else {
		s.step = stateEndValue
	}
}

func isSpace(c byte) bool {
	return c <= ' ' && (c == ' ' || c == '\t' || c == '\r' || c == '\n')
}

func stateBeginValueOrEmpty(s *scanner, c byte) int {
	if isSpace(c) {
		return scanSkipSpace
	}
	if c == ']' {
		return stateEndValue(s, c)
	}
	return stateBeginValue(s, c)
}

func stateBeginValue(s *scanner, c byte) int {
	if isSpace(c) {
		return scanSkipSpace
	}
	switch c {
	case '{':
		s.step = stateBeginStringOrEmpty
		return s.pushParseState(c, parseObjectKey, scanBeginObject)
	case '[':
		s.step = stateBeginValueOrEmpty
		return s.pushParseState(c, parseArrayValue, scanBeginArray)
	case '"':
		s.step = stateInString
		return scanBeginLiteral
	case '-':
		s.step = stateNeg
		return scanBeginLiteral
	case '0':
		s.step = state0
		return scanBeginLiteral
	case 't':
		s.step = literalState("true", 1)
		return scanBeginLiteral
	case 'f':
		s.step = literalState("false", 1)
		return scanBeginLiteral
	case 'n':
		s.step = literalState("null", 1)
		return scanBeginLiteral
	}
	if '1' <= c && c <= '9' {
		s.step = state1
		return scanBeginLiteral
	}
	return s.error(c, "looking for beginning of value")
}

// literalState expects word[i:], the rest of true, false or null.
func literalState(word string, i int) func(*scanner, byte) int {
	return func(s *scanner, c byte) int {
		if c != word[i] {
			return s.error(c, "in literal "+word+" (expecting '"+word[i:i+1]+"')")
		}
		if i+1 == len(word) {
			s.step = stateEndValue
		} else {
			s.step = literalState(word, i+1)
		}
		return scanContinue
	}
}

func stateBeginStringOrEmpty(s *scanner, c byte) int {
	if isSpace(c) {
		return scanSkipSpace
	}
	if c == '}' {
		s.parseState[len(s.parseState)-1] = parseObjectValue
		return stateEndValue(s, c)
	}
	return stateBeginString(s, c)
}

func stateBeginString(s *scanner, c byte) int {
	if isSpace(c) {
		return scanSkipSpace
	}
	if c == '"' {
		s.step = stateInString
		return scanBeginLiteral
	}
	return s.error(c, "looking for beginning of object key string")
}

func stateEndValue(s *scanner, c byte) int {
	n := len(s.parseState)
	if n == 0 {
		s.step = stateEndTop
		s.endTop = true
		return stateEndTop(s, c)
	}
	if isSpace(c) {
		s.step = stateEndValue
		return scanSkipSpace
	}
	switch s.parseState[n-1] {
	case parseObjectKey:
		if c == ':' {
			s.parseState[n-1] = parseObjectValue
			s.step = stateBeginValue
			return scanObjectKey
		}
		return s.error(c, "after object key")
	case parseObjectValue:
		if c == ',' {
			s.parseState[n-1] = parseObjectKey
			s.step = stateBeginString
			return scanObjectValue
		}
		if c == '}' {
			s.popParseState()
			return scanEndObject
		}
		return s.error(c, "after object key:value pair")
	default: // parseArrayValue
		if c == ',' {
			s.step = stateBeginValue
			return scanArrayValue
		}
		if c == ']' {
			s.popParseState()
			return scanEndArray
		}
		return s.error(c, "after array element")
	}
}

func stateEndTop(s *scanner, c byte) int {
	return scanEnd
}

func stateInString(s *scanner, c byte) int {
	if c == '"' {
		s.step = stateEndValue
		return scanContinue
	}
	if c == '\\' {
		s.step = stateInStringEsc
		return scanContinue
	}
	if c < 0x20 {
		return s.error(c, "in string literal")
	}
	return scanContinue
}

func stateInStringEsc(s *scanner, c byte) int {
	switch c {
	case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
		s.step = stateInString
		return scanContinue
	case 'u':
		s.step = hexState(4)
		return scanContinue
	}
	return s.error(c, "in string escape code")
}

// hexState expects the n remaining hex digits of a \u escape.
func hexState(n int) func(*scanner, byte) int {
	return func(s *scanner, c byte) int {
		if '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' {
			if n == 1 {
				s.step = stateInString
			} else {
				s.step = hexState(n - 1)
			}
			return scanContinue
		}
		return s.error(c, "in \\u hexadecimal character escape")
	}
}

func stateNeg(s *scanner, c byte) int {
	if c == '0' {
		s.step = state0
		return scanContinue
	}
	if '1' <= c && c <= '9' {
		s.step = state1
		return scanContinue
	}
	return s.error(c, "in numeric literal")
}

func state1(s *scanner, c byte) int {
	if '0' <= c && c <= '9' {
		s.step = state1
		return scanContinue
	}
	return state0(s, c)
}

func state0(s *scanner, c byte) int {
	if c == '.' {
		s.step = stateDot
		return scanContinue
	}
	if c == 'e' || c == 'E' {
		s.step = stateE
		return scanContinue
	}
	return stateEndValue(s, c)
}

func stateDot(s *scanner, c byte) int {
	if '0' <= c && c <= '9' {
		s.step = stateDot0
		return scanContinue
	}
	return s.error(c, "after decimal point in numeric literal")
}

func stateDot0(s *scanner, c byte) int {
	if '0' <= c && c <= '9' {
		return scanContinue
	}
	if c == 'e' || c == 'E' {
		s.step = stateE
		return scanContinue
	}
	return stateEndValue(s, c)
}

func stateE(s *scanner, c byte) int {
	if c == '+' || c == '-' {
		s.step = stateESign
		return scanContinue
	}
	return stateESign(s, c)
}

func stateESign(s *scanner, c byte) int {
	if '0' <= c && c <= '9' {
		s.step = stateE0
		return scanContinue
	}
	return s.error(c, "in exponent of numeric literal")
}

func stateE0(s *scanner, c byte) int {
	if '0' <= c && c <= '9' {
		return scanContinue
	}
	return stateEndValue(s, c)
}

func stateError(s *scanner, c byte) int {
	return scanError
}

func (s *scanner) error(c byte, context string) int {
	s.step = stateError
	s.err = &syntaxError{"invalid character " + quoteChar(c) + " " + context, s.bytes}
	return scanError
}

// quoteChar formats c as encoding/json does in its syntax errors.
func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}
