//go:build !linux

package wasm

// newAllocator returns the allocator of one instance's linear memory,
// capped at limit bytes: a Go slice.
func newAllocator(limit uint64) allocator {
	return newLimitedAllocator(limit, nil)
}
