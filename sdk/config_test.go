package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
)

// decodeConfigJSON is DecodeConfig as it was, on encoding/json: the
// reference the decoder of this package is held to, error texts included.
//
// Deliberate differences, which no test here can see in a text or a value:
//   - a syntax error wraps sdk's own error type, so errors.As no longer
//     finds a *json.SyntaxError in it (its text and offset are the same);
//   - a *json.UnmarshalTypeError that a type's UnmarshalJSON returns gets
//     its Field completed as encoding/json does, but not its Struct, which
//     the config error does not show;
//   - UnmarshalJSON is handed a slice of the config itself, not of a copy
//     (json.Unmarshaler's contract already says to copy what is kept).
func decodeConfigJSON(config []byte, v any) error {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(config))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return configErrJSON(err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("config: unexpected data after the JSON object")
	}
	return nil
}

func configErrJSON(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return fmt.Errorf("config: must be %s, got a JSON %s", goTypeName(te.Type), te.Value)
		}
		return fmt.Errorf("config: %q must be %s, got a JSON %s", te.Field, goTypeName(te.Type), te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("config: invalid JSON at byte %d: %w", se.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("config: invalid JSON: it ends too early")
	}
	if msg, ok := bytes.CutPrefix([]byte(err.Error()), []byte("json: unknown field ")); ok {
		return fmt.Errorf("config: unknown setting %s", msg)
	}
	return fmt.Errorf("config: %w", err)
}

// fzText is a TextUnmarshaler that refuses "bad".
type fzText struct{ S string }

func (t *fzText) UnmarshalText(b []byte) error {
	if string(b) == "bad" {
		return errors.New("text: bad")
	}
	t.S = string(b)
	return nil
}

// fzJSON is a json.Unmarshaler that refuses arrays and keeps the rest.
type fzJSON struct{ Raw string }

func (j *fzJSON) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		return errors.New("json: no arrays here")
	}
	j.Raw = string(b)
	return nil
}

// fzDur is a json.Unmarshaler that decodes with encoding/json inside, so
// that it returns encoding/json's own errors.
type fzDur struct{ S string }

func (d *fzDur) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &d.S) }

// fzKey is a map key that is a TextUnmarshaler.
type fzKey string

func (k *fzKey) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		return errors.New("key: empty")
	}
	*k = fzKey(strings.ToUpper(string(b)))
	return nil
}

type fzInner struct {
	X    float64 `json:"x"`
	Y    *int8   `json:"y"`
	Deep struct {
		Z uint16 `json:"z"`
	} `json:"deep"`
	L []int `json:"l"`
}

// FzEmbedded is promoted into fzConfig.
type FzEmbedded struct {
	E1     int `json:"e1"`
	Shadow string
	Both   int
}

// FzPtrEmbedded is promoted through a pointer.
type FzPtrEmbedded struct {
	P1   string `json:"p1"`
	Both int
}

type fzUnexported struct {
	U1 int `json:"u1"`
}

// fzHiddenPtr is embedded through a pointer that cannot be allocated.
type fzHiddenPtr struct {
	H1 int `json:"h1"`
}

// fzConfig has a field of every kind DecodeConfig supports.
type fzConfig struct {
	FzEmbedded
	*FzPtrEmbedded
	fzUnexported
	*fzHiddenPtr

	Name   string `json:"name"`
	Shadow int    `json:"shadow"`
	I      int
	I8     int8
	I16    int16 `json:"i16"`
	I32    int32
	I64    int64
	U      uint
	U8     uint8
	U16    uint16
	U32    uint32
	U64    uint64 `json:"u64,omitempty"`
	UP     uintptr
	F32    float32
	F64    float64
	B      bool    `json:"b"`
	Skip   string  `json:"-"`
	Dash   string  `json:"-,"`
	QI     int     `json:"qi,string"`
	QS     string  `json:"qs,string"`
	QB     *bool   `json:"qb,string"`
	QF     float64 `json:",string"`
	List   []string
	Arr    [2]int
	Items  []fzInner `json:"items"`
	Inner  fzInner   `json:"inner"`
	PInner *fzInner  `json:"pinner"`
	PP     **int     `json:"pp"`
	M      map[string]int
	MI     map[int]string
	MU     map[uint8]bool
	MK     map[fzKey]int
	MS     map[string]fzInner
	MA     map[string][]any
	Any    any
	Anys   []any
	Text   fzText
	PText  *fzText
	JSON   fzJSON
	PJSON  *fzJSON
	Dur    fzDur `json:"dur"`
	Bytes  []byte
	Num    json.Number
	Raw    json.RawMessage
	Str    fmt.Stringer
	Ch     chan int
	Cx     complex64
	hidden int
}

// newFz returns a config with values already in place, as a plugin's
// defaults would be, so that decoding over them is compared too.
func newFz(prefill bool) *fzConfig {
	c := new(fzConfig)
	if !prefill {
		return c
	}
	c.Name = "default"
	c.List = []string{"a", "b", "c"}
	c.Items = []fzInner{{X: 1}, {X: 2, L: []int{1}}}
	c.M = map[string]int{"keep": 1}
	c.PInner = &fzInner{X: 9}
	n := int8(3)
	c.Inner.Y = &n
	c.Any = &fzInner{X: 5}
	c.Arr = [2]int{7, 8}
	return c
}

// decodeBoth decodes in into two equal values, with DecodeConfig and with
// the encoding/json reference, and reports any difference.
func decodeBoth(t *testing.T, in []byte, prefill bool) {
	t.Helper()
	ours, ref := newFz(prefill), newFz(prefill)
	err := DecodeConfig(in, ours)
	refErr := decodeConfigJSON(in, ref)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("DecodeConfig(%q): err %v, encoding/json: %v", in, err, refErr)
	}
	if err != nil {
		if err.Error() != refErr.Error() {
			t.Fatalf("DecodeConfig(%q):\n got %s\nwant %s", in, err, refErr)
		}
		return
	}
	if !reflect.DeepEqual(ours, ref) {
		t.Fatalf("DecodeConfig(%q):\n got %+v\nwant %+v", in, ours, ref)
	}
}

// fuzzSeeds cover each kind, each error and the corners of the syntax.
var fuzzSeeds = []string{
	``, ` `, "\t\n", `{}`, ` {} `, `null`, `{"name":"a"}`, `{"NAME":"a"}`, `{"nAmE":"a","name":"b"}`,
	`{"name":"a","name":"b"}`, `{"name":null}`, `{"name":1}`, `{"name":true}`, `{"name":[]}`, `{"name":{}}`,
	`{"I":-9223372036854775808}`, `{"I":9223372036854775808}`, `{"I8":127}`, `{"I8":128}`, `{"I8":-129}`,
	`{"i16":32768}`, `{"I32":2147483648}`, `{"I64":1e3}`, `{"U":-1}`, `{"U8":255}`, `{"U8":256}`,
	`{"U16":65536}`, `{"U32":4294967296}`, `{"u64":18446744073709551615}`, `{"u64":18446744073709551616}`,
	`{"UP":1}`, `{"F32":3.4e38}`, `{"F32":3.5e38}`, `{"F64":1e308}`, `{"F64":1e309}`, `{"F64":-0}`, `{"F64":0.5e-3}`,
	`{"b":true}`, `{"b":false}`, `{"b":"true"}`, `{"b":0}`, `{"Skip":"x"}`, `{"-":"x"}`, `{"Dash":"x"}`,
	`{"qi":"12"}`, `{"qi":12}`, `{"qi":"x"}`, `{"qi":""}`, `{"qi":null}`, `{"qi":"null"}`, `{"qi":[1]}`, `{"qi":"1e400"}`,
	`{"qs":"\"a\""}`, `{"qs":"a"}`, `{"qs":"\"a"}`, `{"qb":"true"}`, `{"qb":"tru"}`, `{"qb":"null"}`, `{"qb":"1"}`,
	`{"QF":"2.5"}`, `{"QF":2.5}`, `{"QF":1e400}`, `{"QF":"\"x\""}`, `{"QF":"nul"}`, `{"qi":"1.5"}`, `{"qi":" 1"}`,
	`{"List":["a","b"]}`, `{"List":[]}`, `{"List":null}`, `{"List":[1]}`, `{"List":"x"}`, `{"List":{}}`,
	`{"Arr":[1]}`, `{"Arr":[1,2,3]}`, `{"Arr":[]}`, `{"Arr":[[1],{"a":1},3]}`,
	`{"items":[{"x":1},{"y":-1}]}`, `{"items":[{"x":"s"}]}`, `{"items":[{"deep":{"z":"s"}}]}`, `{"items":[]}`,
	`{"items":[{"nope":1}]}`, `{"inner":{"x":1.5,"y":2,"deep":{"z":3},"l":[1,2]}}`, `{"inner":{"y":null}}`,
	`{"inner":{"y":"s"}}`, `{"inner":{"l":[1,"s"]}}`, `{"inner":[]}`, `{"inner":null}`, `{"pinner":null}`,
	`{"pinner":{"x":2}}`, `{"pinner":{"x":true}}`, `{"pp":1}`, `{"pp":null}`, `{"pp":"s"}`,
	`{"M":{"a":1,"b":2}}`, `{"M":{"a":"s"}}`, `{"M":null}`, `{"M":[]}`, `{"MI":{"1":"a","-2":"b"}}`,
	`{"MI":{"x":"a"}}`, `{"MI":{"99999999999999999999":"a"}}`, `{"MU":{"255":true}}`, `{"MU":{"256":true}}`,
	`{"MU":{"-1":true}}`, `{"MK":{"a":1}}`, `{"MK":{"":1}}`, `{"MS":{"k":{"x":"s"}}}`, `{"MS":{"k":{"q":1}}}`,
	`{"MA":{"k":[1,"a",null,true,{"x":[]}]}}`, `{"Any":{"a":[1,2.5,"x",null,true,{}]}}`, `{"Any":1e400}`,
	`{"Any":[1e400]}`, `{"Any":null}`, `{"Any":"s"}`, `{"Anys":[1,[2],{"3":4}]}`,
	`{"Text":"hello"}`, `{"Text":"bad"}`, `{"Text":1}`, `{"Text":null}`, `{"Text":true}`, `{"Text":[]}`,
	`{"Text":{}}`, `{"PText":"x"}`, `{"PText":null}`, `{"JSON":{"a":1}}`, `{"JSON":[1]}`, `{"JSON":null}`,
	`{"JSON":"s"}`, `{"PJSON":null}`, `{"PJSON":12}`, `{"PJSON":[]}`, `{"dur":"1s"}`, `{"dur":1}`,
	`{"inner":{"l":[1]},"dur":1}`, `{"Bytes":"aGVsbG8="}`, `{"Bytes":"!!"}`, `{"Bytes":[1,2]}`, `{"Bytes":null}`,
	`{"Num":1.5}`, `{"Num":"1.5"}`, `{"Num":"x"}`, `{"Num":true}`, `{"Raw":{"a":[1, 2]}}`, `{"Raw":null}`,
	`{"Str":"s"}`, `{"Str":1}`, `{"Str":null}`, `{"Str":{}}`, `{"Ch":1}`, `{"Cx":1}`, `{"hidden":1}`,
	`{"e1":1,"shadow":2,"Shadow":3}`, `{"p1":"x"}`, `{"Both":1}`, `{"u1":1}`, `{"FzEmbedded":{}}`,
	`{"FZEMBEDDED":1}`, `{"fzUnexported":1}`, `{"h1":1}`, `{"h1":1,"I":"s"}`, `{"I":"s","h1":1}`,
	`{"name":"\u00e9\ud83d\ude00\ud800x\\\"\/\b\f\n\r\t"}`, "{\"name\":\"\xff\xfe\"}", "{\"n\xffame\":1}",
	`{"name":"\ud800\u0041"}`, `{"\u006eame":"a"}`, `{"ſ":1}`, `{"K":1}`, `{"\u212a":1}`, `{"ſhadow":2}`, `{"İ":1}`, `{"\u212a\u0131":1}`,
	`"str"`, `1`, `[1]`, `true`, `[]`, `{"name":"a"}x`, `{"name":"a"} {}`, `{"name":"a"}}`, `1 2`, `"a"x`,
	`123x`, `{} ` + "\v", `{"name":`, `{"name"`, `{`, `[`, `"`, `tru`, `-`, `1.`, `1e`, `{"name":"a"`,
	`{"name" "a"}`, `{name:1}`, `{"name":01}`, `{"name":-x}`, `{"name":1.x}`, `{"name":1ex}`, `{"name":tx}`,
	`{"name":trux}`, `{"name":fals}`, `{"name":nulx}`, `{"name":"\x"}`, `{"name":"\u12x4"}`, "{\"name\":\"\x01\"}",
	`{"a":1,}`, `[1,]`, `{,}`, `{"a" : 1 , "b":[ ]}`, `x`, `'a'`, "\xef\xbb\xbf{}", "\u00a0", "\u00a0{}", "\v{}",
	`{"nmae":"a","I":"s"}`, `{"I":"s","nmae":"a"}`, `{"nmae":"a","JSON":[1]}`, `{"I":"s","Text":"bad"}`,
	strings.Repeat("[", 10001), strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	`{"Any":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"Any":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
}

func FuzzDecodeConfigMatchesEncodingJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"List":["x"],"items":[{"l":[5]}],"M":{"b":2},"pinner":{"y":1},"Any":{"x":3},"Arr":[1]}`), true)
	f.Add([]byte(`{"List":[],"items":[{}],"M":null,"pinner":null,"Any":null,"inner":{"y":null}}`), true)
	f.Fuzz(func(t *testing.T, in []byte, prefill bool) {
		decodeBoth(t, in, prefill)
		// The decoding pass alone, on input the syntax check has not
		// seen, must not panic or loop either.
		_ = unmarshal(in, newFz(prefill))
		if prefill {
			decodeBothAny(t, string(in), func() any { return new(any) })
			decodeBothAny(t, string(in), func() any { return &map[fzKey][]int{"A": {1}} })
		}
	})
}

// Named types of the kinds a config is made of: errors name the kind.
type (
	fzLevel int
	fzMode  string
	fzTags  []string
)

func TestDecodeConfigErrors(t *testing.T) {
	type cfg struct {
		Name  string            `json:"name"`
		N     int               `json:"n"`
		U8    uint8             `json:"u8"`
		F     float64           `json:"f"`
		On    bool              `json:"on"`
		List  []string          `json:"list"`
		Items []struct{ A int } `json:"items"`
		M     map[string]int    `json:"m"`
		Inner struct {
			X float64 `json:"x"`
		} `json:"inner"`
		Text fzText  `json:"text"`
		Dur  fzDur   `json:"dur"`
		Lvl  fzLevel `json:"lvl"`
		Mode fzMode  `json:"mode"`
		Ptr  *int    `json:"ptr"`
		Tags fzTags  `json:"tags"`
	}
	for _, tc := range []struct{ in, want string }{
		{`{"nmae":"a"}`, `config: unknown setting "nmae"`},
		{`{"name":1}`, `config: "name" must be a string, got a JSON number`},
		{`{"n":"2"}`, `config: "n" must be a whole number, got a JSON string`},
		{`{"n":2.5}`, `config: "n" must be a whole number, got a JSON number 2.5`},
		{`{"u8":256}`, `config: "u8" must be a whole number, got a JSON number 256`},
		{`{"f":"x"}`, `config: "f" must be a number, got a JSON string`},
		{`{"f":1e999}`, `config: "f" must be a number, got a JSON number 1e999`},
		{`{"on":1}`, `config: "on" must be true or false, got a JSON number`},
		{`{"list":"x"}`, `config: "list" must be a list, got a JSON string`},
		{`{"list":[1]}`, `config: "list" must be a string, got a JSON number`},
		{`{"items":[{"A":"x"}]}`, `config: "items.A" must be a whole number, got a JSON string`},
		{`{"m":[]}`, `config: "m" must be an object, got a JSON array`},
		{`{"m":{"k":true}}`, `config: "m" must be a whole number, got a JSON bool`},
		{`{"inner":{"x":"y"}}`, `config: "inner.x" must be a number, got a JSON string`},
		{`{"inner":{"q":1}}`, `config: unknown setting "q"`},
		{`{"text":"bad"}`, `config: text: bad`},
		{`{"text":1}`, `config: "text" must be a string, got a JSON number`},
		{`{"lvl":"debug"}`, `config: "lvl" must be a whole number, got a JSON string`},
		{`{"mode":true}`, `config: "mode" must be a string, got a JSON bool`},
		{`{"ptr":"1"}`, `config: "ptr" must be a whole number, got a JSON string`},
		{`{"tags":{}}`, `config: "tags" must be a list, got a JSON object`},
		{`{"dur":1}`, `config: "dur" must be a string, got a JSON number`},
		{`"str"`, `config: must be an object, got a JSON string`},
		{`[1]`, `config: must be an object, got a JSON array`},
		{`{"name":"a"}x`, `config: unexpected data after the JSON object`},
		{`{"name":"a"} {}`, `config: unexpected data after the JSON object`},
		{`{"name":`, `config: invalid JSON: it ends too early`},
		{`tru`, `config: invalid JSON: it ends too early`},
		{`{"name" "a"}`, `config: invalid JSON at byte 9: invalid character '"' after object key`},
		{`{name:1}`, `config: invalid JSON at byte 2: invalid character 'n' looking for beginning of object key string`},
		{`{"n":1,}`, `config: invalid JSON at byte 8: invalid character '}' looking for beginning of object key string`},
		{`{"n":01}`, `config: invalid JSON at byte 7: invalid character '1' after object key:value pair`},
		{`{"n":trux}`, `config: invalid JSON at byte 9: invalid character 'x' in literal true (expecting 'e')`},
		{`{"name":"\x"}`, `config: invalid JSON at byte 11: invalid character 'x' in string escape code`},
		{"\u00a0{}", `config: invalid JSON at byte 1: invalid character 'Â' looking for beginning of value`},
		{strings.Repeat("[", 10001), `config: invalid JSON at byte 10001: invalid character '[' exceeded max depth`},
	} {
		var c cfg
		err := DecodeConfig([]byte(tc.in), &c)
		if err == nil || err.Error() != tc.want {
			t.Errorf("DecodeConfig(%.40s):\n got %v\nwant %s", tc.in, err, tc.want)
		}
		if ref := decodeConfigJSON([]byte(tc.in), new(cfg)); ref == nil || ref.Error() != tc.want {
			t.Errorf("encoding/json on %.40s: %v, the table says %s", tc.in, ref, tc.want)
		}
	}
}

func TestDecodeConfigKinds(t *testing.T) {
	seven := int8(7)
	want := newFz(false)
	want.Name = "x\u00e9\U0001F600\ufffd"
	want.E1, want.Shadow, want.FzPtrEmbedded = 1, 2, &FzPtrEmbedded{P1: "p"}
	want.I, want.I8, want.I16, want.I32, want.I64 = -1, -128, 32767, -2147483648, math.MaxInt64
	want.U, want.U8, want.U16, want.U32, want.U64, want.UP = 1, 255, 65535, math.MaxUint32, math.MaxUint64, 3
	want.F32, want.F64, want.B = 1.5, -2.25e-3, true
	want.QI, want.QS = 12, "q"
	want.List, want.Arr = []string{"a", "b"}, [2]int{1, 0}
	want.Items = []fzInner{{X: 1}, {Y: &seven}}
	want.Inner.Deep.Z = 9
	want.PInner = &fzInner{L: []int{}}
	want.M, want.MI, want.MK = map[string]int{"a": 2}, map[int]string{-3: "m"}, map[fzKey]int{"K": 1}
	want.Any = map[string]any{"l": []any{1.0, "s", nil, true}}
	want.Text, want.PText = fzText{"t"}, &fzText{"p"}
	want.JSON, want.PJSON = fzJSON{`{"a": [1]}`}, &fzJSON{"null"}
	want.Bytes, want.Num, want.Raw = []byte("hi"), "1.5e3", json.RawMessage(`[1]`)
	in := `{"name":"x\u00e9\ud83d\ude00\ud800", "e1":1, "shadow":2, "p1":"p",
		"I":-1, "I8":-128, "i16":32767, "I32":-2147483648, "I64":9223372036854775807,
		"U":1, "U8":255, "U16":65535, "U32":4294967295, "u64":18446744073709551615, "UP":3,
		"F32":1.5, "F64":-2.25e-3, "b":true, "qi":"12", "qs":"\"q\"",
		"List":["a","b"], "Arr":[1], "items":[{"x":1},{"y":7}], "inner":{"deep":{"z":9}},
		"pinner":{"l":[]}, "M":{"a":1,"a":2}, "MI":{"-3":"m"}, "MK":{"k":1},
		"Any":{"l":[1,"s",null,true]}, "Text":"t", "PText":"p", "JSON":{"a": [1]}, "PJSON":null,
		"Bytes":"aGk=", "Num":1.5e3, "Raw":[1]}`
	want.PJSON = nil // null sets a pointer to nil without calling UnmarshalJSON
	got := newFz(false)
	if err := DecodeConfig([]byte(in), got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	decodeBoth(t, []byte(in), false)
	decodeBoth(t, []byte(in), true)

	// Empty config leaves v alone; so does null.
	for _, in := range []string{"", " \n\t", "null"} {
		c := newFz(true)
		if err := DecodeConfig([]byte(in), c); err != nil || !reflect.DeepEqual(c, newFz(true)) {
			t.Errorf("DecodeConfig(%q) = %v, changed %+v", in, err, c)
		}
	}
}

func TestDecodeConfigTarget(t *testing.T) {
	var c struct{ A int }
	var nilp *struct{ A int }
	for _, tc := range []struct {
		v    any
		want string
	}{
		{c, "config: json: Unmarshal(non-pointer struct { A int })"},
		{nilp, "config: json: Unmarshal(nil *struct { A int })"},
		{nil, "config: json: Unmarshal(nil)"},
	} {
		for name, decode := range map[string]func([]byte, any) error{"ours": DecodeConfig, "encoding/json": decodeConfigJSON} {
			if err := decode([]byte(`{"A":1}`), tc.v); err == nil || err.Error() != tc.want {
				t.Errorf("%s into %T: %v, want %s", name, tc.v, err, tc.want)
			}
		}
	}
	// An interface holding a pointer to itself must not loop.
	decodeBothAny(t, `{"a":1}`, func() any { var v any; v = &v; return &v })
}

// decodeBothAny is decodeBoth for any target type.
func decodeBothAny(t *testing.T, in string, newV func() any) {
	t.Helper()
	ours, ref := newV(), newV()
	err, refErr := DecodeConfig([]byte(in), ours), decodeConfigJSON([]byte(in), ref)
	if fmt.Sprint(err) != fmt.Sprint(refErr) {
		t.Fatalf("DecodeConfig(%q) = %v, encoding/json: %v", in, err, refErr)
	}
	if err == nil && !reflect.DeepEqual(ours, ref) {
		t.Fatalf("DecodeConfig(%q):\n got %#v\nwant %#v", in, ours, ref)
	}
}

// TestDecodeConfigUnwraps checks that the error of a type's own decoder
// stays reachable with errors.Is, as with fmt.Errorf's %w before.
func TestDecodeConfigUnwraps(t *testing.T) {
	var c struct{ T fzText }
	err := DecodeConfig([]byte(`{"T":"bad"}`), &c)
	if err == nil || err.Error() != "config: text: bad" || errors.Unwrap(err) == nil || errors.Unwrap(err).Error() != "text: bad" {
		t.Fatalf("got %v", err)
	}
}

// TestDecodeUncheckedPrefixes runs the decoding pass, without the syntax
// check, on every prefix of the short seeds: it must return, not panic.
func TestDecodeUncheckedPrefixes(t *testing.T) {
	for _, s := range fuzzSeeds {
		if len(s) > 300 {
			continue
		}
		for i := range len(s) + 1 {
			_ = unmarshal([]byte(s[:i]), newFz(i%2 == 0))
			_ = unmarshal([]byte(s[:i]), new(any))
		}
	}
}
