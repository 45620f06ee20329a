package host_test

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

type passHook struct{}

func (passHook) Open(*host.ConnInfo) (host.Filter, error) { return host.PassThrough{}, nil }

// benchTransfer sends b.N chunks of size bytes through addr, one connection.
func benchTransfer(b *testing.B, addr string, size int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForward measures one-way bulk throughput: straight to the server
// (the baseline), through the tunnel with no hook (splice), and through the
// tunnel with a pass-through hook on both directions (the filtered path, on
// goroutines and on the route's own loop).
// Compare the MB/s columns of one run:
//
//	go test -run '^$' -bench Forward -benchmem ./host
func BenchmarkForward(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go tn.Sink(ln)

	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err = p.Apply([]host.Route{
		{Name: "splice", Listen: "127.0.0.1:0", Target: ln.Addr().String()},
		{Name: "filtered", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: []host.Link{{Name: "pass", Hook: passHook{}}}},
		{Name: "inline", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: []host.Link{{Name: "pass", Hook: inlineHook{passHook{}}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()

	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run("direct/"+sizeName(size), func(b *testing.B) { benchTransfer(b, ln.Addr().String(), size) })
		b.Run("splice/"+sizeName(size), func(b *testing.B) { benchTransfer(b, p.Addr("splice").String(), size) })
		b.Run("filtered/"+sizeName(size), func(b *testing.B) { benchTransfer(b, p.Addr("filtered").String(), size) })
		b.Run("inline/"+sizeName(size), func(b *testing.B) { benchTransfer(b, p.Addr("inline").String(), size) })
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// TestFilteredPathAllocations checks that the filtered path allocates
// nothing per chunk in steady state: the process-wide allocation count over
// many chunks stays far below one per chunk.
// It runs on both engines, one after the other (the count is the process's).
func TestFilteredPathAllocations(t *testing.T) {
	t.Run("goroutines", func(t *testing.T) { filteredAllocations(t, passHook{}) })
	t.Run("inline", func(t *testing.T) { filteredAllocations(t, inlineHook{passHook{}}) })
}

func filteredAllocations(t *testing.T, hook host.Hook) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	if err := p.Apply([]host.Route{{Name: "f", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: []host.Link{{Name: "pass", Hook: hook}}}}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr("f").String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	// Warm up: buffers enter the pools.
	for i := 0; i < 200; i++ {
		c.Write(buf)
	}
	const chunks = 5000
	allocs := testing.AllocsPerRun(1, func() {
		for i := 0; i < chunks; i++ {
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
	})
	c.Close()
	// AllocsPerRun runs the function once more to warm up.
	if n := <-done; n != int64(2*chunks+200)*4096 {
		t.Fatalf("server got %d bytes, want %d", n, (2*chunks+200)*4096)
	}
	// The client's writes and the tunnel's reads run in the same process;
	// allow a little noise (GC, timers), not one allocation per chunk.
	if allocs > chunks/10 {
		t.Fatalf("%.0f allocations for %d chunks: the filtered path allocates per chunk", allocs, chunks)
	}
	t.Logf("%.0f allocations for %d chunks", allocs, chunks)
}
