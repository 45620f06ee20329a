// Portions of this file are adapted from Go's encoding/json, Copyright 2010
// The Go Authors. All rights reserved. Use of that source code is governed
// by a BSD-style license that can be found in the LICENSE-go file.

package sdk

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The decoding half of DecodeConfig: encoding/json's Unmarshal rules (see
// its documentation) ported onto reflect, for input that scanValue has
// already checked. Where encoding/json saves an error and goes on, so does
// this; where it returns one at once, so does this; so the first error, and
// thus the message a user sees, is the same.

// jsonUnmarshaler is json.Unmarshaler, declared here: a type that
// implements that interface implements this one.
type jsonUnmarshaler interface {
	UnmarshalJSON([]byte) error
}

// textUnmarshaler is encoding.TextUnmarshaler.
type textUnmarshaler interface {
	UnmarshalText([]byte) error
}

var textUnmarshalerType = reflect.TypeFor[textUnmarshaler]()

// typeError is a JSON value that does not fit the Go type it is decoded
// into (encoding/json's UnmarshalTypeError).
type typeError struct {
	value string       // "string", "number", "number 2.5", "bool", "array", "object", "null"
	typ   reflect.Type // the Go type
	field string       // path of JSON names and embedded struct names, dot-separated
}

func (e *typeError) Error() string {
	return "json: cannot unmarshal " + e.value + " into Go value of type " + e.typ.String()
}

// unknownFieldError is an object key that names no field of the struct.
type unknownFieldError struct{ key string }

func (e *unknownFieldError) Error() string { return "json: unknown field " + strconv.Quote(e.key) }

// stringTagError is a value that a ",string" field cannot take.
func stringTagError(item []byte, t reflect.Type) error {
	return errors.New("json: invalid use of ,string struct tag, trying to unmarshal " + strconv.Quote(string(item)) + " into " + t.String())
}

// errOutOfSync cannot happen: the input was checked by scanValue.
var errOutOfSync = errors.New("json: decoder out of sync")

// decoder decodes one checked JSON value.
type decoder struct {
	data   []byte
	off    int      // next byte to read
	saved  error    // the first error that did not stop decoding
	fields []string // where the decoder is: the path a typeError names
	cache  map[reflect.Type]*structFields
}

// unmarshal decodes data, one complete and valid JSON value, into v.
func unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		t := reflect.TypeOf(v)
		switch {
		case t == nil:
			return errors.New("json: Unmarshal(nil)")
		case t.Kind() != reflect.Pointer:
			return errors.New("json: Unmarshal(non-pointer " + t.String() + ")")
		}
		return errors.New("json: Unmarshal(nil " + t.String() + ")")
	}
	d := &decoder{data: data}
	d.skipSpace()
	// Decode rv, not rv.Elem: v itself may be an unmarshaler.
	if err := d.value(rv); err != nil {
		// Like encoding/json, name the field in an UnmarshalTypeError of
		// encoding/json that a type's UnmarshalJSON returned.
		if e := jsonError(err, "UnmarshalTypeError"); len(d.fields) > 0 && e.IsValid() {
			if f := e.FieldByName("Field"); f.Kind() == reflect.String && f.CanSet() {
				path := d.fields
				if f.String() != "" {
					path = append(path[:len(path):len(path)], f.String())
				}
				f.SetString(strings.Join(path, "."))
			}
		}
		return err
	}
	return d.saved
}

// saveError keeps the first err, with the field path of a type error.
func (d *decoder) saveError(err error) {
	if d.saved != nil {
		return
	}
	if te, ok := err.(*typeError); ok && len(d.fields) > 0 {
		te.field = strings.Join(d.fields, ".")
	}
	d.saved = err
}

func (d *decoder) skipSpace() {
	for d.off < len(d.data) && isSpace(d.data[d.off]) {
		d.off++
	}
}

// literal returns the literal (string, number, true, false, null) at d.off
// and moves past it.
func (d *decoder) literal() []byte {
	data, start := d.data, d.off
	i := start + 1
	switch data[start] {
	case '"':
		for ; i < len(data); i++ {
			if data[i] == '\\' {
				i++
			} else if data[i] == '"' {
				i++
				break
			}
		}
	case 't', 'n':
		i = start + 4
	case 'f':
		i = start + 5
	default: // number
		for ; i < len(data); i++ {
			c := data[i]
			if !('0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
				break
			}
		}
	}
	i = min(i, len(data))
	d.off = i
	return data[start:i]
}

// skip moves past the value at d.off.
func (d *decoder) skip() {
	depth := 0
	for d.off < len(d.data) {
		switch d.data[d.off] {
		case '{', '[':
			depth++
			d.off++
		case '}', ']':
			depth--
			d.off++
		case '"':
			d.literal()
		default:
			d.off++
		}
		if depth == 0 {
			return
		}
	}
}

// next skips space and returns the byte at d.off, 0 at the end.
func (d *decoder) next() byte {
	d.skipSpace()
	if d.off < len(d.data) {
		return d.data[d.off]
	}
	return 0
}

// value decodes the value at d.off into v; an invalid v skips it.
func (d *decoder) value(v reflect.Value) error {
	switch d.next() {
	case '[':
		if !v.IsValid() {
			d.skip()
			return nil
		}
		return d.array(v)
	case '{':
		if !v.IsValid() {
			d.skip()
			return nil
		}
		return d.object(v)
	case 0:
		return errOutOfSync
	}
	item := d.literal()
	if !v.IsValid() {
		return nil
	}
	return d.literalStore(item, v, false)
}

// indirect walks down v allocating pointers as needed, until it gets to a
// non-pointer. If it meets an unmarshaler, it stops and returns that. If
// decodingNull, it stops at the first settable pointer so that it can be
// set to nil.
func indirect(v reflect.Value, decodingNull bool) (jsonUnmarshaler, textUnmarshaler, reflect.Value) {
	v0 := v
	haveAddr := false
	// A named addressable value: start with its address, so that pointer
	// methods are found.
	if v.Kind() != reflect.Pointer && v.Type().Name() != "" && v.CanAddr() {
		haveAddr = true
		v = v.Addr()
	}
	for {
		// Load value from interface, but only if the result will be
		// usefully addressable.
		if v.Kind() == reflect.Interface && !v.IsNil() {
			e := v.Elem()
			if e.Kind() == reflect.Pointer && !e.IsNil() && (!decodingNull || e.Elem().Kind() == reflect.Pointer) {
				haveAddr = false
				v = e
				continue
			}
		}
		if v.Kind() != reflect.Pointer {
			break
		}
		if decodingNull && v.CanSet() {
			break
		}
		// An interface pointing to its own address (var v any; v = &v).
		if v.Elem().Kind() == reflect.Interface && v.Elem().Elem().Equal(v) {
			v = v.Elem()
			break
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		if v.Type().NumMethod() > 0 && v.CanInterface() {
			if u, ok := v.Interface().(jsonUnmarshaler); ok {
				return u, nil, reflect.Value{}
			}
			if !decodingNull {
				if u, ok := v.Interface().(textUnmarshaler); ok {
					return nil, u, reflect.Value{}
				}
			}
		}
		if haveAddr {
			v = v0 // restore the original value after the Addr round trip
			haveAddr = false
		} else {
			v = v.Elem()
		}
	}
	return nil, nil, v
}

// byMethod decodes the array or object at d.off (what) with the
// UnmarshalJSON of v if it has one, and refuses it if v is a
// TextUnmarshaler: then done is true. Otherwise it returns the value that
// v points to, allocated.
func (d *decoder) byMethod(v reflect.Value, what string) (pv reflect.Value, done bool, err error) {
	u, ut, pv := indirect(v, false)
	if u != nil {
		start := d.off
		d.skip()
		return pv, true, u.UnmarshalJSON(d.data[start:d.off])
	}
	if ut != nil {
		d.saveError(&typeError{value: what, typ: v.Type()})
		d.skip()
		return pv, true, nil
	}
	return pv, false, nil
}

// array decodes the array at d.off into v.
func (d *decoder) array(v reflect.Value) error {
	v, done, err := d.byMethod(v, "array")
	if done {
		return err
	}
	switch v.Kind() {
	case reflect.Interface:
		if v.NumMethod() == 0 {
			ai, err := d.arrayInterface()
			if err != nil {
				return err
			}
			v.Set(reflect.ValueOf(ai))
			return nil
		}
		d.saveError(&typeError{value: "array", typ: v.Type()})
		d.skip()
		return nil
	default:
		d.saveError(&typeError{value: "array", typ: v.Type()})
		d.skip()
		return nil
	case reflect.Array, reflect.Slice:
	}

	d.off++ // [
	i := 0
	for d.next() != ']' {
		if i > 0 {
			d.off++ // ,
		}
		if v.Kind() == reflect.Slice {
			if i >= v.Cap() {
				v.Grow(1)
			}
			if i >= v.Len() {
				v.SetLen(i + 1)
			}
		}
		elem := reflect.Value{} // past the end of a Go array: skip
		if i < v.Len() {
			elem = v.Index(i)
		}
		if err := d.value(elem); err != nil {
			return err
		}
		i++
	}
	d.off++ // ]
	if i < v.Len() {
		if v.Kind() == reflect.Array {
			for ; i < v.Len(); i++ {
				v.Index(i).SetZero()
			}
		} else {
			v.SetLen(i)
		}
	}
	if i == 0 && v.Kind() == reflect.Slice {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	}
	return nil
}

// object decodes the object at d.off into v.
func (d *decoder) object(v reflect.Value) error {
	v, done, err := d.byMethod(v, "object")
	if done {
		return err
	}
	t := v.Type()
	if v.Kind() == reflect.Interface && v.NumMethod() == 0 {
		oi, err := d.objectInterface()
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(oi))
		return nil
	}

	var fields *structFields
	switch v.Kind() {
	case reflect.Map:
		// The key must be a string, an integer or a TextUnmarshaler.
		switch t.Key().Kind() {
		case reflect.String,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !reflect.PointerTo(t.Key()).Implements(textUnmarshalerType) {
				d.saveError(&typeError{value: "object", typ: t})
				d.skip()
				return nil
			}
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
	case reflect.Struct:
		fields = d.cache[t]
		if fields == nil {
			fields = typeFields(t)
			if d.cache == nil {
				d.cache = map[reflect.Type]*structFields{}
			}
			d.cache[t] = fields
		}
	default:
		d.saveError(&typeError{value: "object", typ: t})
		d.skip()
		return nil
	}

	var mapElem reflect.Value
	depth := len(d.fields)
	d.off++ // {
	for first := true; d.next() != '}'; first = false {
		if !first {
			d.off++ // ,
			d.skipSpace()
		}
		if d.off >= len(d.data) || d.data[d.off] != '"' {
			return errOutOfSync
		}
		item := d.literal()
		key, ok := unquoteBytes(item)
		if !ok {
			return errOutOfSync
		}

		var subv reflect.Value
		destring := false // the value is a string holding the literal
		if v.Kind() == reflect.Map {
			if !mapElem.IsValid() {
				mapElem = reflect.New(t.Elem()).Elem()
			} else {
				mapElem.SetZero()
			}
			subv = mapElem
		} else if f := fields.lookup(key); f != nil {
			subv = v
			destring = f.quoted
			for i, ind := range f.index {
				if subv.Kind() == reflect.Pointer {
					if subv.IsNil() {
						// An embedded nil pointer to an unexported type
						// cannot be allocated.
						if !subv.CanSet() {
							d.saveError(errors.New("json: cannot set embedded pointer to unexported struct: " + subv.Type().Elem().String()))
							subv = reflect.Value{}
							destring = false
							break
						}
						subv.Set(reflect.New(subv.Type().Elem()))
					}
					subv = subv.Elem()
				}
				if i < len(f.index)-1 {
					d.fields = append(d.fields, subv.Type().Field(ind).Name)
				}
				subv = subv.Field(ind)
			}
			d.fields = append(d.fields, f.name)
		} else {
			d.saveError(&unknownFieldError{key: string(key)})
		}

		if d.next() != ':' {
			return errOutOfSync
		}
		d.off++
		if destring {
			if err := d.valueQuoted(subv); err != nil {
				return err
			}
		} else if err := d.value(subv); err != nil {
			return err
		}

		// Write the value back to the map; a struct field is set already.
		if v.Kind() == reflect.Map {
			kt := t.Key()
			var kv reflect.Value
			if reflect.PointerTo(kt).Implements(textUnmarshalerType) {
				kv = reflect.New(kt)
				if err := d.literalStore(item, kv, true); err != nil {
					return err
				}
				kv = kv.Elem()
			} else {
				switch kt.Kind() {
				case reflect.String:
					kv = reflect.New(kt).Elem()
					kv.SetString(string(key))
				default: // an integer
					kv = reflect.New(kt).Elem()
					if !setInteger(kv, string(key)) {
						d.saveError(&typeError{value: "number " + string(key), typ: kt})
						kv = reflect.Value{}
					}
				}
			}
			if kv.IsValid() {
				v.SetMapIndex(kv, subv)
			}
		}
		d.fields = d.fields[:depth]
	}
	d.off++ // }
	return nil
}

// lookup finds the field of a key: exact name first, then ignoring case.
func (sf *structFields) lookup(key []byte) *field {
	if f := sf.byExactName[string(key)]; f != nil {
		return f
	}
	return sf.byFoldedName[string(foldName(key))]
}

// valueQuoted decodes the value of a ",string" field: a string holding the
// literal, or null.
func (d *decoder) valueQuoted(v reflect.Value) error {
	switch d.next() {
	case 0:
		return errOutOfSync
	case '{', '[':
		d.skip()
	default:
		item := d.literal()
		switch item[0] {
		case 'n':
			return d.literalStore([]byte("null"), v, false)
		case '"':
			s, ok := unquoteBytes(item)
			if !ok {
				return errOutOfSync
			}
			return d.literalStore(s, v, true)
		case 't', 'f':
		default:
			if _, err := d.convertNumber(item); err != nil {
				d.saveError(err)
			}
		}
	}
	d.saveError(errors.New("json: invalid use of ,string struct tag, trying to unmarshal unquoted value into " + v.Type().String()))
	return nil
}

// convertNumber is a JSON number as a float64, the type an any holds.
func (d *decoder) convertNumber(item []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(item), 64)
	if err != nil {
		return 0, &typeError{value: "number " + string(item), typ: reflect.TypeFor[float64]()}
	}
	return f, nil
}

// isNumberType reports whether t is encoding/json's Number.
func isNumberType(t reflect.Type) bool {
	return t.Kind() == reflect.String && t.Name() == "Number" && t.PkgPath() == "encoding/json"
}

// literalStore decodes the literal item into v. fromQuoted: item came out
// of the string of a ",string" field.
func (d *decoder) literalStore(item []byte, v reflect.Value, fromQuoted bool) error {
	if len(item) == 0 {
		d.saveError(stringTagError(item, v.Type()))
		return nil
	}
	isNull := item[0] == 'n'
	u, ut, pv := indirect(v, isNull)
	if u != nil {
		return u.UnmarshalJSON(item)
	}
	if ut != nil {
		if item[0] != '"' {
			if fromQuoted {
				d.saveError(stringTagError(item, v.Type()))
				return nil
			}
			val := "number"
			switch item[0] {
			case 'n':
				val = "null"
			case 't', 'f':
				val = "bool"
			}
			d.saveError(&typeError{value: val, typ: v.Type()})
			return nil
		}
		s, ok := unquoteBytes(item)
		if !ok {
			if fromQuoted {
				return stringTagError(item, v.Type())
			}
			return errOutOfSync
		}
		return ut.UnmarshalText(s)
	}

	v = pv
	switch c := item[0]; c {
	case 'n': // null
		if fromQuoted && string(item) != "null" {
			d.saveError(stringTagError(item, v.Type()))
			break
		}
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			v.SetZero()
			// null leaves other values as they are
		}
	case 't', 'f':
		value := c == 't'
		if fromQuoted && string(item) != "true" && string(item) != "false" {
			d.saveError(stringTagError(item, v.Type()))
			break
		}
		switch v.Kind() {
		default:
			if fromQuoted {
				d.saveError(stringTagError(item, v.Type()))
			} else {
				d.saveError(&typeError{value: "bool", typ: v.Type()})
			}
		case reflect.Bool:
			v.SetBool(value)
		case reflect.Interface:
			if v.NumMethod() == 0 {
				v.Set(reflect.ValueOf(value))
			} else {
				d.saveError(&typeError{value: "bool", typ: v.Type()})
			}
		}
	case '"':
		s, ok := unquoteBytes(item)
		if !ok {
			if fromQuoted {
				return stringTagError(item, v.Type())
			}
			return errOutOfSync
		}
		switch v.Kind() {
		default:
			d.saveError(&typeError{value: "string", typ: v.Type()})
		case reflect.Slice:
			if v.Type().Elem().Kind() != reflect.Uint8 {
				d.saveError(&typeError{value: "string", typ: v.Type()})
				break
			}
			b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(b, s)
			if err != nil {
				d.saveError(err)
				break
			}
			v.SetBytes(b[:n])
		case reflect.String:
			t := string(s)
			if isNumberType(v.Type()) && !isValidNumber(t) {
				return errors.New("json: invalid number literal, trying to unmarshal " + strconv.Quote(string(item)) + " into Number")
			}
			v.SetString(t)
		case reflect.Interface:
			if v.NumMethod() == 0 {
				v.Set(reflect.ValueOf(string(s)))
			} else {
				d.saveError(&typeError{value: "string", typ: v.Type()})
			}
		}
	default: // number
		if c != '-' && (c < '0' || c > '9') {
			if fromQuoted {
				return stringTagError(item, v.Type())
			}
			return errOutOfSync
		}
		switch v.Kind() {
		default:
			if isNumberType(v.Type()) {
				v.SetString(string(item))
				break
			}
			if fromQuoted {
				return stringTagError(item, v.Type())
			}
			d.saveError(&typeError{value: "number", typ: v.Type()})
		case reflect.Interface:
			n, err := d.convertNumber(item)
			if err != nil {
				d.saveError(err)
				break
			}
			if v.NumMethod() != 0 {
				d.saveError(&typeError{value: "number", typ: v.Type()})
				break
			}
			v.Set(reflect.ValueOf(n))
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if !setInteger(v, string(item)) {
				d.saveError(&typeError{value: "number " + string(item), typ: v.Type()})
			}
		case reflect.Float32, reflect.Float64:
			n, err := strconv.ParseFloat(string(item), v.Type().Bits())
			if err != nil || v.OverflowFloat(n) {
				d.saveError(&typeError{value: "number " + string(item), typ: v.Type()})
				break
			}
			v.SetFloat(n)
		}
	}
	return nil
}

// setInteger sets v, of a signed or unsigned integer kind, to the decimal
// integer s; false, leaving v alone, if s is not one or does not fit.
func setInteger(v reflect.Value, s string) bool {
	if v.CanInt() {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(n) {
			return false
		}
		v.SetInt(n)
		return true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v.OverflowUint(n) {
		return false
	}
	v.SetUint(n)
	return true
}

// The interface routines build the value an any holds: map[string]any,
// []any, float64, string, bool or nil.

func (d *decoder) valueInterface() (any, error) {
	switch d.next() {
	case '[':
		return d.arrayInterface()
	case '{':
		return d.objectInterface()
	case 0:
		return nil, errOutOfSync
	}
	return d.literalInterface()
}

func (d *decoder) arrayInterface() ([]any, error) {
	v := make([]any, 0)
	d.off++ // [
	for d.next() != ']' {
		if len(v) > 0 {
			d.off++ // ,
		}
		e, err := d.valueInterface()
		if err != nil {
			return nil, err
		}
		v = append(v, e)
	}
	d.off++ // ]
	return v, nil
}

func (d *decoder) objectInterface() (map[string]any, error) {
	m := make(map[string]any)
	d.off++ // {
	for first := true; d.next() != '}'; first = false {
		if !first {
			d.off++ // ,
			d.skipSpace()
		}
		if d.off >= len(d.data) || d.data[d.off] != '"' {
			return nil, errOutOfSync
		}
		key, ok := unquoteBytes(d.literal())
		if !ok || d.next() != ':' {
			return nil, errOutOfSync
		}
		d.off++
		e, err := d.valueInterface()
		if err != nil {
			return nil, err
		}
		m[string(key)] = e
	}
	d.off++ // }
	return m, nil
}

func (d *decoder) literalInterface() (any, error) {
	item := d.literal()
	switch c := item[0]; c {
	case 'n':
		return nil, nil
	case 't', 'f':
		return c == 't', nil
	case '"':
		s, ok := unquoteBytes(item)
		if !ok {
			return nil, errOutOfSync
		}
		return string(s), nil
	}
	n, err := d.convertNumber(item)
	if err != nil {
		d.saveError(err)
		return nil, nil
	}
	return n, nil
}

// isValidNumber reports whether s is a JSON number literal.
func isValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	default:
		return false
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

// getu4 decodes \uXXXX from the beginning of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// unquoteBytes decodes a quoted JSON string. Invalid UTF-8 and lone
// surrogates become U+FFFD, as in encoding/json.
func unquoteBytes(s []byte) (t []byte, ok bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return
	}
	s = s[1 : len(s)-1]
	// Nothing unusual: no unquoting needed.
	r := 0
	for r < len(s) {
		c := s[r]
		if c == '\\' || c == '"' || c < ' ' {
			break
		}
		rr, size := utf8.DecodeRune(s[r:])
		if rr == utf8.RuneError && size == 1 {
			break
		}
		r += size
	}
	if r == len(s) {
		return s, true
	}

	b := make([]byte, r, len(s)+2*utf8.UTFMax)
	copy(b, s[:r])
	for r < len(s) {
		switch c := s[r]; {
		case c == '\\':
			r++
			if r >= len(s) {
				return
			}
			switch s[r] {
			default:
				return
			case '"', '\\', '/', '\'':
				b = append(b, s[r])
				r++
			case 'b', 'f', 'n', 'r', 't':
				// \b, \f, \n, \r or \t: the control character of the letter.
				b = append(b, "\b\f\n\r\t"[strings.IndexByte("bfnrt", s[r])])
				r++
			case 'u':
				r--
				rr := getu4(s[r:])
				if rr < 0 {
					return
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						break
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
			}
		case c == '"', c < ' ':
			return
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return b, true
}
