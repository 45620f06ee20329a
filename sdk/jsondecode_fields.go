// Portions of this file are adapted from Go's encoding/json, Copyright 2010
// The Go Authors. All rights reserved. Use of that source code is governed
// by a BSD-style license that can be found in the LICENSE-go file.

package sdk

import (
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The fields of a struct as encoding/json sees them: a port of its
// typeFields, so that json tags, "-", case-insensitive keys and promoted
// fields of embedded structs match a config key exactly as before.

// field is one settable JSON member of a struct.
type field struct {
	name   string
	tag    bool  // name came from a json tag
	index  []int // path of struct field indexes, through embedded structs
	typ    reflect.Type
	quoted bool // ",string": the value is a JSON string holding the literal
}

// structFields are the members of one struct type, by name.
type structFields struct {
	byExactName  map[string]*field
	byFoldedName map[string]*field
}

func typeFields(t reflect.Type) *structFields {
	// Anonymous fields to explore at the current level and the next.
	current := []field{}
	next := []field{{typ: t}}
	// Count of queued names for current level and the next.
	var count, nextCount map[reflect.Type]int
	// Types already visited at an earlier level.
	visited := map[reflect.Type]bool{}
	var fields []field

	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}

		for _, f := range current {
			if visited[f.typ] {
				continue
			}
			visited[f.typ] = true
			for i := 0; i < f.typ.NumField(); i++ {
				sf := f.typ.Field(i)
				if sf.Anonymous {
					t := sf.Type
					if t.Kind() == reflect.Pointer {
						t = t.Elem()
					}
					if !sf.IsExported() && t.Kind() != reflect.Struct {
						// Ignore embedded fields of unexported non-struct types.
						continue
					}
					// Embedded unexported struct types may have exported fields.
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !isValidTag(name) {
					name = ""
				}
				index := make([]int, len(f.index)+1)
				copy(index, f.index)
				index[len(f.index)] = i

				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				// Only strings, floats, integers, and booleans can be quoted.
				quoted := false
				if tagHas(opts, "string") {
					switch ft.Kind() {
					case reflect.Bool,
						reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
						reflect.Float32, reflect.Float64,
						reflect.String:
						quoted = true
					}
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					tagged := name != ""
					if name == "" {
						name = sf.Name
					}
					fields = append(fields, field{name: name, tag: tagged, index: index, typ: ft, quoted: quoted})
					if count[f.typ] > 1 {
						// Several instances: a second copy makes the
						// annihilation below see a duplicate.
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				// Record new anonymous struct to explore in next round.
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, field{name: ft.Name(), index: index, typ: ft})
				}
			}
		}
	}

	// Sort by name, then depth, then tagged first, then index sequence.
	sortFields(fields, func(a, b *field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if len(a.index) != len(b.index) {
			return len(a.index) - len(b.index)
		}
		if a.tag != b.tag {
			if a.tag {
				return -1
			}
			return +1
		}
		return slices.Compare(a.index, b.index)
	})

	// Delete the fields hidden by Go's rules for embedded fields, except
	// that fields with json tags are promoted.
	out := fields[:0]
	for advance, i := 0, 0; i < len(fields); i += advance {
		fi := fields[i]
		for advance = 1; i+advance < len(fields); advance++ {
			if fields[i+advance].name != fi.name {
				break
			}
		}
		if advance == 1 {
			out = append(out, fi)
			continue
		}
		// The first is dominant unless the second is as shallow and as
		// tagged: then neither is used.
		if g := fields[i+1]; len(fi.index) != len(g.index) || fi.tag != g.tag {
			out = append(out, fi)
		}
	}
	fields = out
	sortFields(fields, func(a, b *field) int { return slices.Compare(a.index, b.index) })

	sf := &structFields{
		byExactName:  make(map[string]*field, len(fields)),
		byFoldedName: make(map[string]*field, len(fields)),
	}
	for i := range fields {
		f := &fields[i]
		sf.byExactName[f.name] = f
		// For historical reasons, the first folded match takes precedence.
		folded := string(foldName([]byte(f.name)))
		if _, ok := sf.byFoldedName[folded]; !ok {
			sf.byFoldedName[folded] = f
		}
	}
	return sf
}

// sortFields sorts fs by cmp. A struct has few fields: an insertion sort
// does, and links less into the plugin than slices.SortFunc.
func sortFields(fs []field, cmp func(a, b *field) int) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && cmp(&fs[j-1], &fs[j]) > 0; j-- {
			fs[j-1], fs[j] = fs[j], fs[j-1]
		}
	}
}

// tagHas reports whether the comma-separated options hold name.
func tagHas(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}

func isValidTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
			// Backslash and quote chars are reserved, but otherwise any
			// punctuation chars are allowed in a tag name.
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

// foldName returns a canonical form of a key for case-insensitive matching,
// as encoding/json folds.
func foldName(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
