package sdk

import (
	"encoding/binary"
	"unsafe"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// Shared state (ABI v2): a key-value store that the host keeps for the
// plugin, shared by all its instances (every connection of the plugin's
// route sees the same values, whichever instance serves it). The host
// keeps it outside the instances, so values survive an instance's failure;
// a reload keeps them unless the plugin's configuration or module changed.
// Keys are 1 to 256 bytes; the host bounds each value (64 KiB by default)
// and the total of keys and values (1 MiB by default): past a bound a call
// returns [ErrTooLarge] and changes nothing. An empty value is no value:
// setting it deletes the key.
//
// Every call is atomic on its own (the host serialises them); combine
// [StateCompareAndSwap] or [StateAdd] for read-modify-write. The calls work
// in every callback, the factory included; outside a callback (in a
// goroutine, at package init) they do nothing and report failure
// ([ErrNotAllowed]).

func keyBytes(key string) []byte { return unsafe.Slice(unsafe.StringData(key), len(key)) }

// StateGet returns a copy of the value of key in the plugin's shared state,
// and whether key is set.
func StateGet(key string) ([]byte, bool) {
	in := active
	if in == nil {
		return nil, false
	}
	k := keyBytes(key)
	n := in.host.StateGet(k, in.scratch[:])
	for n >= 0 {
		if int(n) <= len(in.scratch) {
			return append([]byte(nil), in.scratch[:n]...), true
		}
		b := make([]byte, n)
		m := in.host.StateGet(k, b)
		if m == n {
			return b, true
		}
		n = m // another instance changed the value in between: again
	}
	return nil, false
}

// StateSet sets key to value in the plugin's shared state (an empty value
// deletes key). It returns [ErrTooLarge] when value, or the state's total,
// would pass the host's bound, and [ErrBadArgument] for an empty key or one
// longer than 256 bytes.
func StateSet(key string, value []byte) error {
	if active == nil {
		return ErrNotAllowed
	}
	return statusErr(active.host.StateSet(keyBytes(key), value))
}

// StateDelete deletes key from the plugin's shared state, if set.
func StateDelete(key string) {
	if active != nil {
		active.host.StateDelete(keyBytes(key))
	}
}

// StateAdd adds delta to the integer stored at key (8 bytes, little-endian
// two's complement; a missing key counts as 0) and returns the sum, as one
// atomic step: the way to count across connections and instances. The sum
// wraps around on overflow. It returns [ErrBadArgument] when key holds a
// value that is not 8 bytes long, or the key is invalid, and [ErrTooLarge]
// when creating the key would pass the state's bound.
func StateAdd(key string, delta int64) (int64, error) {
	in := active
	if in == nil {
		return 0, ErrNotAllowed
	}
	out := in.scratch[:8]
	if st := in.host.StateAdd(keyBytes(key), delta, out); st != abi.StatusOK {
		return 0, statusErr(st)
	}
	return int64(binary.LittleEndian.Uint64(out)), nil
}

// StateCompareAndSwap sets key to new if its value is old, as one atomic
// step, and reports whether it did. An empty old means "key is not set";
// an empty new deletes key. Errors are those of [StateSet].
func StateCompareAndSwap(key string, old, new []byte) (bool, error) {
	if active == nil {
		return false, ErrNotAllowed
	}
	switch st := active.host.StateCAS(keyBytes(key), old, new); st {
	case 1:
		return true, nil
	case 0:
		return false, nil
	default:
		return false, statusErr(st)
	}
}

// StateValue encodes n as a value of [StateAdd] (8 bytes, little-endian),
// for [StateSet] and [StateCompareAndSwap].
func StateValue(n int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(n)) }

// StateInt decodes a value of [StateAdd]; ok is false when b is not 8 bytes.
func StateInt(b []byte) (n int64, ok bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b)), true
}
