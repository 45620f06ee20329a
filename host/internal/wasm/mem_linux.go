package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// newAllocator returns the allocator of one instance's linear memory,
// capped at limit bytes: memory outside the Go heap, mapped from the kernel
// and unmapped when the instance is closed (see mappedMemory).
func newAllocator(limit uint64) allocator {
	return &mappedAllocator{limit: limit}
}

type mappedAllocator struct {
	limit    uint64
	mem      *mappedMemory // nil until Allocate, or when mapping failed
	refusals uint64        // growths past the limit refused, by either memory
}

// Allocate implements experimental.MemoryAllocator: it reserves the address
// space of the whole memory (max bytes, at most the limit) without
// committing any of it. If the reservation fails, the memory is a Go slice.
func (a *mappedAllocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	size := min(max, a.limit)
	if size == 0 || a.mem != nil {
		return newLimitedAllocator(a.limit, &a.refusals)
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return newLimitedAllocator(a.limit, &a.refusals)
	}
	mappedBytes.Add(int64(size))
	a.mem = &mappedMemory{res: b, refusals: &a.refusals}
	return a.mem
}

// refused implements allocator. The reservation is at most the limit, and
// wazero never asks past a module's own maximum: a growth past the
// reservation is one past the limit.
func (a *mappedAllocator) refused() (*uint64, uint64) { return &a.refusals, a.limit }

// release unmaps the memory.
func (a *mappedAllocator) release() {
	if a.mem != nil {
		a.mem.unmap()
	}
}

// mappedMemory is a linear memory in an anonymous mapping of its own: the
// whole reservation is mapped inaccessible at once, and made readable and
// writable as the guest grows its memory, so the memory never moves and
// growing it copies nothing. Free unmaps it: its pages go back to the
// kernel at once, where memory in a Go slice stays in the process until a
// garbage collection frees it and the scavenger returns it, minutes later.
//
// wazero calls Free when the module is closed, which it does by itself
// after a call cut off by CloseOnContextDone (the guarded variant), while
// the Instance may still touch the memory (OnData writes the chunk before
// the call finds the instance killed). So Free does nothing; the memory is
// unmapped by Instance.Close (through the allocator's release), after
// which nothing reads or writes it.
type mappedMemory struct {
	res       []byte  // the reservation
	committed uint64  // bytes at the start made accessible
	refusals  *uint64 // growths past the reservation refused: the allocator's count
}

// Reallocate implements experimental.LinearMemory; nil refuses the growth.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.res == nil {
		return nil
	}
	if size > uint64(len(m.res)) {
		*m.refusals++
		return nil
	}
	if size > m.committed {
		if err := unix.Mprotect(m.res[m.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.committed = size
	}
	return m.res[:size:size]
}

// Free implements experimental.LinearMemory: the memory stays mapped until
// Instance.Close (see mappedMemory).
func (m *mappedMemory) Free() {}

// unmap gives the memory back to the kernel.
func (m *mappedMemory) unmap() {
	if m.res == nil {
		return
	}
	if err := unix.Munmap(m.res); err == nil {
		mappedBytes.Add(-int64(len(m.res)))
	}
	m.res = nil
}

// mappedBytes is the address space reserved by live mapped memories (for
// tests).
var mappedBytes atomic.Int64
