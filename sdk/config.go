package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
func DecodeConfig(config []byte, v any) error {
	if len(bytes.TrimSpace(config)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(config))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return configErr(err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("config: unexpected data after the JSON object")
	}
	return nil
}

func configErr(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return fmt.Errorf("config: must be %s, got a JSON %s", goTypeName(te.Type.String()), te.Value)
		}
		return fmt.Errorf("config: %q must be %s, got a JSON %s", field, goTypeName(te.Type.String()), te.Value)
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

func goTypeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	}
	if len(t) > 2 && t[:2] == "[]" {
		return "a list"
	}
	if len(t) > 4 && t[:4] == "map[" {
		return "an object"
	}
	return "an object"
}
