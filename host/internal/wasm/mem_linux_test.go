package wasm

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// rss is the process's resident set size, in bytes.
func rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// The linear memory of a closed instance goes back to the kernel at once,
// without waiting for a garbage collection: four instances that each fill
// 64 MiB raise RSS by about 256 MiB, and closing them takes it back down.
// A Go slice (the old allocator, still the fallback) keeps it until the
// collector and the scavenger get to it: logged for comparison.
//
// Not parallel: RSS is the process's.
func TestClosedInstanceMemoryLeavesRSS(t *testing.T) {
	const limit, n = 64 << 20, 4
	ctx := context.Background()
	e, err := NewEngine("")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	bin, err := os.ReadFile("../../plugin/testdata/noop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	before := rss(t)
	var ins []*Instance
	for range n {
		in, err := c.Instantiate(ctx, Options{MemoryLimit: limit, CallTimeout: 1e9, InitTimeout: 1e9, MaxOutput: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
		if _, ok := in.mem.Grow(uint32(limit>>16) - in.mem.Size()>>16); !ok {
			t.Fatalf("cannot grow to the limit (%d bytes)", in.mem.Size())
		}
		if _, ok := in.mem.Grow(1); ok {
			t.Fatal("grew past the limit")
		}
		for off := uint32(0); off < limit; off += 4096 {
			in.mem.WriteByte(off, 1)
		}
	}
	full := rss(t)
	for _, in := range ins {
		in.Close(ctx)
	}
	after := rss(t)
	t.Logf("mapped memory: RSS %d MiB before, %d MiB with %d instances of %d MiB filled, %d MiB once they are closed",
		before>>20, full>>20, n, limit>>20, after>>20)
	if grew := full - before; grew < n*limit*9/10 {
		t.Fatalf("RSS grew by %d MiB, want about %d", grew>>20, n*limit>>20)
	}
	if left := after - before; left > n*limit/10 {
		t.Errorf("RSS is still %d MiB above where it was once the instances are closed, want under %d", left>>20, n*limit/10>>20)
	}
	if m := mappedBytes.Load(); m != 0 {
		t.Errorf("%d bytes still mapped", m)
	}

	// The Go slice, for comparison.
	before = rss(t)
	var mems []*limitedAllocator
	for range n {
		a := newLimitedAllocator(limit, nil)
		b := a.Reallocate(limit)
		for off := 0; off < limit; off += 4096 {
			b[off] = 1
		}
		mems = append(mems, a)
	}
	full = rss(t)
	for _, a := range mems {
		a.Free()
		a.release()
	}
	t.Logf("Go slices: RSS %d MiB before, %d MiB filled, %d MiB once freed (before any GC)", before>>20, full>>20, rss(t)>>20)
}
