package sdk

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// DecodeConfig decodes the JSON configuration into v strictly: an unknown
// field, a value of the wrong type or trailing data is an error that names
// the field. Empty config (the route has no config block) leaves v as it is.
//
//	type config struct {
//		From string `json:"from"`
//		To   string `json:"to"`
//	}
//	var c config
//	if err := sdk.DecodeConfig(raw, &c); err != nil {
//		return nil, fmt.Errorf("replace: %w", err)
//	}
//
// It follows the rules of encoding/json's Unmarshal (json tags, fields
// matched ignoring case, json.Unmarshaler and encoding.TextUnmarshaler
// types), without linking encoding/json and fmt into the plugin.
func DecodeConfig(config []byte, v any) error {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil
	}
	n, err := scanValue(config)
	if err != nil {
		return configErr(err)
	}
	if err := unmarshal(config[:n], v); err != nil {
		return configErr(err)
	}
	for _, c := range config[n:] {
		if !isSpace(c) {
			return errors.New("config: unexpected data after the JSON object")
		}
	}
	return nil
}

// configError is a decoding error in the words of a config file, wrapping
// the error it describes.
type configError struct {
	msg string
	err error
}

func (e *configError) Error() string { return e.msg }
func (e *configError) Unwrap() error { return e.err }

func configErr(err error) error {
	var te *typeError
	if errors.As(err, &te) {
		return typeErr(te.field, te.typ, te.value)
	}
	// encoding/json's own errors, from a type's UnmarshalJSON.
	if e := findError(err, "UnmarshalTypeError"); e.IsValid() {
		if t, _ := e.FieldByName("Type").Interface().(reflect.Type); t != nil {
			return typeErr(e.FieldByName("Field").String(), t, e.FieldByName("Value").String())
		}
	}
	var se *syntaxError
	if errors.As(err, &se) && se != errEndsEarly {
		return &configError{"config: invalid JSON at byte " + strconv.FormatInt(se.offset, 10) + ": " + err.Error(), err}
	}
	if e := findError(err, "SyntaxError"); e.IsValid() {
		return &configError{"config: invalid JSON at byte " + strconv.FormatInt(e.FieldByName("Offset").Int(), 10) + ": " + err.Error(), err}
	}
	if err == errEndsEarly || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("config: invalid JSON: it ends too early")
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &configError{"config: unknown setting " + msg, err}
	}
	return &configError{"config: " + err.Error(), err}
}

func typeErr(field string, t reflect.Type, value string) error {
	if field == "" {
		return errors.New("config: must be " + goTypeName(t) + ", got a JSON " + value)
	}
	return errors.New("config: " + strconv.Quote(field) + " must be " + goTypeName(t) + ", got a JSON " + value)
}

// findError returns the struct that the first error of type *json.name in
// err's tree points to (as errors.As would find it), or the zero Value.
func findError(err error, name string) reflect.Value {
	for err != nil {
		if v := jsonError(err, name); v.IsValid() {
			return v
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if v := findError(e, name); v.IsValid() {
					return v
				}
			}
			return reflect.Value{}
		default:
			return reflect.Value{}
		}
	}
	return reflect.Value{}
}

// jsonError returns the struct that err points to if err is a
// *json.name of encoding/json, or the zero Value.
func jsonError(err error, name string) reflect.Value {
	v := reflect.ValueOf(err)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return reflect.Value{}
	}
	if t := v.Type().Elem(); t.Kind() != reflect.Struct || t.Name() != name || t.PkgPath() != "encoding/json" {
		return reflect.Value{}
	}
	return v.Elem()
}

// goTypeName names, in the words of a config file, the Go type t, by its
// kind: a named type (type level int) is what it is made of, a pointer what
// it points to, and a type that decodes itself from text (an
// encoding.TextUnmarshaler) a string.
func goTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "an object" // a map, a struct, or any other type
}
