package config

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/tunnelwasm/tunnel/internal/regfile"
)

// Bounds on what a configuration file may make the tunnel do while it is
// parsed: a file is read by `tunnel validate` and by every live reload of
// a running tunnel, so no file may crash the process or stall it.
const (
	// MaxConfigFile is the largest configuration file read.
	MaxConfigFile = 4 << 20
	// MaxNesting is the deepest nesting of brackets, braces and
	// parentheses in a file. hcl's parser recurses once per level (a few
	// KiB of stack each): ~60,000 levels overflow Go's 1 GiB stack, which
	// kills the process.
	MaxNesting = 1000
	// MaxValueElements bounds the size of one value (a function's result,
	// a local, an attribute): its list, set, tuple, map and object elements
	// at every depth, plus one per 64 bytes of string. Each doubling of a
	// list by concat doubles the work, so a cap on the values stops a
	// runaway file after a few steps.
	MaxValueElements = 100_000
	// maxEvalElements bounds the elements all the function calls of one
	// file may produce together.
	maxEvalElements = 10 * MaxValueElements
)

// readConfig reads a configuration file, at most one byte more than
// MaxConfigFile (which checkSource then reports).
func readConfig(path string) ([]byte, error) {
	f, err := regfile.Open(path) // a named pipe must not hang the load
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxConfigFile+1))
}

// checkSource reports a file too large or nested too deeply to be parsed
// safely, at the position where the bound is crossed.
func checkSource(src []byte, filename string) hcl.Diagnostics {
	if len(src) > MaxConfigFile {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Configuration file too large",
			Detail:   fmt.Sprintf("%s is more than %d bytes (%s), the most a configuration file may have.", filename, MaxConfigFile, FormatSize(MaxConfigFile)),
			Subject:  &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	if off := tooDeep(src, MaxNesting); off >= 0 {
		pos := position(src, off)
		end := pos
		end.Byte++
		end.Column++
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Nested too deeply",
			Detail:   fmt.Sprintf("Brackets, braces and parentheses are nested more than %d levels deep here; the tunnel does not parse deeper nesting. Flatten the value, or name its parts in a locals block.", MaxNesting),
			Subject:  &hcl.Range{Filename: filename, Start: pos, End: end},
		}}
	}
	return nil
}

// tooDeep returns the offset of the first bracket, brace or parenthesis
// opened deeper than limit, or -1. Quoted strings are skipped, except for
// their ${ } and %{ } interpolations, which nest like braces; comments are
// skipped. What it cannot tell apart (a heredoc's text) can only count as
// deeper than it is, never shallower.
func tooDeep(src []byte, limit int) int {
	// stack records, for each open level, whether closing it returns into
	// a quoted string (an interpolation) or not.
	var stack []bool
	inString := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inString {
			switch {
			case c == '\\':
				i++
			case c == '"':
				inString = false
			case (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == '{':
				if i+2 < len(src) && src[i+2] == c { // $${ and %%{ are escapes
					continue
				}
				i++
				stack = append(stack, true)
				inString = false
				if len(stack) > limit {
					return i
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			} else if i+1 < len(src) && src[i+1] == '*' {
				i += 2
				for i+1 < len(src) && (src[i] != '*' || src[i+1] != '/') {
					i++
				}
				i++
			}
		case '(', '[', '{':
			stack = append(stack, false)
			if len(stack) > limit {
				return i
			}
		case ')', ']', '}':
			if n := len(stack); n > 0 {
				inString = stack[n-1]
				stack = stack[:n-1]
			}
		}
	}
	return -1
}

// position returns the line, column and byte of off in src.
func position(src []byte, off int) hcl.Pos {
	pos := hcl.InitialPos
	for _, c := range src[:off] {
		if c == '\n' {
			pos.Line++
			pos.Column = 1
		} else if c&0xC0 != 0x80 { // count characters, not bytes
			pos.Column++
		}
	}
	pos.Byte = off
	return pos
}

// checkForNesting reports a for expression inside another one: the work
// of nested for expressions multiplies, with no function call to bound it.
func checkForNesting(body hcl.Body) hcl.Diagnostics {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var diags hcl.Diagnostics
	hclsyntax.VisitAll(b, func(n hclsyntax.Node) hcl.Diagnostics {
		outer, ok := n.(*hclsyntax.ForExpr)
		if !ok {
			return nil
		}
		for _, inner := range []hclsyntax.Expression{outer.KeyExpr, outer.ValExpr, outer.CondExpr} {
			if inner == nil {
				continue
			}
			hclsyntax.VisitAll(inner, func(m hclsyntax.Node) hcl.Diagnostics {
				if f, ok := m.(*hclsyntax.ForExpr); ok {
					rng := f.SrcRange
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "Nested for expression",
						Detail:   "A for expression inside another one is not allowed: their work multiplies without bound. Compute the inner one in a locals block first.",
						Subject:  &rng,
					})
				}
				return nil
			})
		}
		return nil
	})
	return diags
}

// valueSize counts the elements of v (see MaxValueElements), stopping once
// the count passes limit.
func valueSize(v cty.Value, limit int) int {
	if !v.IsKnown() || v.IsNull() {
		return 0
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return len(v.AsString()) / 64
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType() || ty.IsMapType() || ty.IsObjectType():
		n := 0
		for it := v.ElementIterator(); it.Next() && n <= limit; {
			_, e := it.Element()
			n += 1 + valueSize(e, limit-n)
		}
		return n
	}
	return 0
}

// tooBig reports a value larger than MaxValueElements.
func tooBig(v cty.Value) bool { return valueSize(v, MaxValueElements) > MaxValueElements }

// evalBudget counts the elements the function calls of one file produce.
type evalBudget struct{ spent int }

// bounded wraps every function so that a result larger than
// MaxValueElements, or one past the file's budget, is an error instead of
// the start of a runaway evaluation.
func bounded(funcs map[string]function.Function, b *evalBudget) map[string]function.Function {
	out := make(map[string]function.Function, len(funcs))
	for name, fn := range funcs {
		spec := &function.Spec{
			Description: fn.Description(),
			Params:      fn.Params(),
			VarParam:    fn.VarParam(),
			Type: func(args []cty.Value) (cty.Type, error) {
				return fn.ReturnTypeForValues(args)
			},
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				if b.spent > maxEvalElements {
					return cty.NilVal, fmt.Errorf("the functions of this file have produced more than %d elements in all; simplify the file", maxEvalElements)
				}
				// Checked before the call too: the string functions
				// allocate their whole result first (replace of a 1,000
				// byte string by itself asks for a terabyte at once).
				if est, ok := resultBytes[name]; ok {
					if n := est(args); n > maxStringBytes {
						return cty.NilVal, fmt.Errorf("the result of %s would be a string of about %d bytes, more than the %d a configuration value may have", name, n, maxStringBytes)
					}
				}
				v, err := fn.Call(args)
				if err != nil {
					return v, err
				}
				n := valueSize(v, MaxValueElements)
				b.spent += n
				if n > MaxValueElements {
					return cty.NilVal, fmt.Errorf("the result of %s has more than %d elements, more than a configuration value may have", name, MaxValueElements)
				}
				return v, nil
			},
		}
		if vp := fn.VarParam(); vp != nil {
			spec.VarParam = vp
		}
		out[name] = function.New(spec)
	}
	return out
}

// maxStringBytes is the longest string a function may return: what
// MaxValueElements allows (one element per 64 bytes).
const maxStringBytes = 64 * MaxValueElements

// resultBytes estimates, before the call, the length of the string a
// function returns from its arguments, for the functions whose result can
// be much larger than their arguments; at least the true length, in
// int64 so that it cannot wrap.
var resultBytes = map[string]func(args []cty.Value) int64{
	"replace": func(args []cty.Value) int64 {
		if len(args) != 3 || !knownStrings(args...) {
			return 0
		}
		str, old, repl := args[0].AsString(), args[1].AsString(), args[2].AsString()
		n := int64(len(str)) + 1 // an empty old matches before every rune and at the end
		if old != "" {
			n = int64(strings.Count(str, old))
		}
		return int64(len(str)) + n*max(int64(len(repl))-int64(len(old)), 0)
	},
	"join": func(args []cty.Value) int64 {
		if len(args) < 1 || !knownStrings(args[0]) {
			return 0
		}
		sep := int64(len(args[0].AsString()))
		var total, elems int64
		for _, l := range args[1:] {
			if !l.IsWhollyKnown() || l.IsNull() || !l.CanIterateElements() {
				continue
			}
			for it := l.ElementIterator(); it.Next(); {
				_, e := it.Element()
				if knownStrings(e) {
					total += int64(len(e.AsString()))
				}
				elems++
			}
		}
		return total + elems*sep
	},
	"format": func(args []cty.Value) int64 {
		if len(args) < 1 || !knownStrings(args[0]) {
			return 0
		}
		f := args[0].AsString()
		n := int64(len(f)) + formatWidths(f)
		for _, a := range args[1:] {
			n += int64(valueSize(a, MaxValueElements)+1)*64 + numberDigits(a)
		}
		return n
	},
	"jsonencode": func(args []cty.Value) int64 {
		if len(args) != 1 {
			return 0
		}
		return int64(valueSize(args[0], MaxValueElements)+1)*64 + numberDigits(args[0])
	},
}

// numberDigits bounds the decimal digits the numbers in v print as: a
// number is a big float, and 1e10000000 prints ten million digits (a
// 40-byte file made format and jsonencode allocate for seconds).
func numberDigits(v cty.Value) int64 {
	if !v.IsKnown() || v.IsNull() {
		return 0
	}
	ty := v.Type()
	switch {
	case ty == cty.Number:
		exp := v.AsBigFloat().MantExp(nil) // v = mant × 2^exp
		return int64(math.Abs(float64(exp)))*30103/100000 + 64
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType() || ty.IsMapType() || ty.IsObjectType():
		var n int64
		for it := v.ElementIterator(); it.Next() && n <= maxStringBytes; {
			_, e := it.Element()
			n += numberDigits(e)
		}
		return n
	}
	return 0
}

// knownStrings reports whether every v is a known, non-null string.
func knownStrings(vs ...cty.Value) bool {
	for _, v := range vs {
		if !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			return false
		}
	}
	return true
}

// formatWidths sums the numbers (widths, precisions, argument indexes)
// inside the verbs of a format string: "%9999999d" pads to that width.
func formatWidths(f string) int64 {
	var sum int64
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		var num int64
		for i++; i < len(f); i++ {
			c := f[i]
			if c >= '0' && c <= '9' {
				num = min(num*10+int64(c-'0'), 1<<40)
				continue
			}
			sum, num = sum+num, 0
			if strings.IndexByte("+-# .[]", c) < 0 {
				break // the verb, or "%%"
			}
		}
		sum += num
	}
	return sum
}
