package abi

import (
	"bytes"
	"math"
	"unicode/utf8"
)

// This file holds the rules of metric_define, shared by the host and the
// native emulator (sdk/sdktest) so that both accept and refuse the same
// definitions.

// ValidMetricName reports whether name is a valid metric or label name:
// [a-zA-Z_][a-zA-Z0-9_]*, 1 to max bytes.
func ValidMetricName(name []byte, max int) bool {
	if len(name) == 0 || len(name) > max {
		return false
	}
	for i, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ReservedLabel is the label the host adds to every plugin metric: the
// route's name. A plugin may not define it.
const ReservedLabel = "route"

// Label is one label of a metric series.
type Label struct{ Name, Value string }

// ParseLabels decodes the labels argument of metric_define: "name=value"
// pairs separated by '\n' (empty for none). It returns StatusOK or
// StatusBadArgument (a malformed pair, an invalid or duplicate name, a
// reserved one, a value that is not UTF-8, too long or holds a NUL, with
// which exporters join the values of a series' key) or StatusTooLarge
// (more than MaxMetricLabels).
func ParseLabels(b []byte) ([]Label, int32) {
	if len(b) == 0 {
		return nil, StatusOK
	}
	var out []Label
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
			if len(b) == 0 {
				return nil, StatusBadArgument // a trailing separator
			}
		} else {
			b = nil
		}
		eq := bytes.IndexByte(line, '=')
		if eq < 0 {
			return nil, StatusBadArgument
		}
		name, value := line[:eq], line[eq+1:]
		if !ValidMetricName(name, MaxMetricLabelLen) || bytes.HasPrefix(name, []byte("__")) ||
			string(name) == ReservedLabel || len(value) > MaxMetricLabelLen || !utf8.Valid(value) || bytes.IndexByte(value, 0) >= 0 {
			return nil, StatusBadArgument
		}
		for _, l := range out {
			if l.Name == string(name) {
				return nil, StatusBadArgument
			}
		}
		if len(out) == MaxMetricLabels {
			return nil, StatusTooLarge
		}
		out = append(out, Label{string(name), string(value)})
	}
	return out, StatusOK
}

// CheckBounds checks a histogram's bucket upper bounds: 1 to
// MaxHistogramBuckets finite values in increasing order. It returns
// StatusOK, StatusBadArgument or StatusTooLarge.
func CheckBounds(bounds []float64) int32 {
	switch {
	case len(bounds) == 0:
		return StatusBadArgument
	case len(bounds) > MaxHistogramBuckets:
		return StatusTooLarge
	}
	for i, v := range bounds {
		if math.IsNaN(v) || math.IsInf(v, 0) || i > 0 && v <= bounds[i-1] {
			return StatusBadArgument
		}
	}
	return StatusOK
}

// ValidObservation reports whether a histogram may observe v: not NaN and
// not infinite, which would make its sum NaN or infinite for good.
func ValidObservation(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
