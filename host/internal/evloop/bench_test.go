//go:build linux

package evloop

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

const (
	// pingSize is the size of a ping-pong message (a small Redis GET).
	pingSize = 32
	// bulkChunk is the bytes sent per op by BenchmarkBulk.
	bulkChunk = 256 << 10
)

// forwarder starts a forwarder to target and returns its address.
type forwarder func(b *testing.B, target netip.AddrPort) (addr string)

// forwarders are what the benchmarks compare; "direct" (the client dials
// the server) is the baseline: a forwarder's cost is its cpu-ns/op minus
// direct's in the same run. (The CPU is the whole process's, clients and
// servers included: the loop goroutine is not locked to a thread, so no
// thread's CPU clock is the loop's alone.)
var forwarders = []struct {
	name  string
	start forwarder
}{
	{"direct", func(_ *testing.B, target netip.AddrPort) string { return target.String() }},
	{"evloop-splice", loopForwarder(false)},
	{"evloop-readwrite", loopForwarder(true)},
	{"goroutines", goroutineForwarder},
}

func loopForwarder(readWrite bool) forwarder {
	return func(b *testing.B, target netip.AddrPort) string {
		_, _, _, addr := startForwarder(b, target, fwdOptions{readWrite: readWrite})
		return addr
	}
}

// goroutineForwarder is the naive forwarder: two goroutines and io.Copy
// (which splices on Linux) per connection.
func goroutineForwarder(b *testing.B, target netip.AddrPort) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s, err := net.Dial("tcp", target.String())
				if err != nil {
					return
				}
				defer s.Close()
				go func() {
					io.Copy(s, c)
					s.(*net.TCPConn).CloseWrite()
				}()
				io.Copy(c, s)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// measure runs the timed part and reports CPU per op.
func measure(b *testing.B, run func()) {
	cpu0 := testkit.ProcessCPU()
	b.ReportAllocs()
	b.ResetTimer()
	run()
	b.StopTimer()
	b.ReportMetric(float64(testkit.ProcessCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkPingPong: each op is one 32-byte request and its 32-byte echo
// through the forwarder, with 1 or 50 clients in flight.
//
// The clients and the server are goroutines of this process, which a
// tunnel's are not, and with one client that favours the goroutine
// forwarder: each hop wakes a goroutine, and while the loop sleeps in
// epoll_wait as a system call, the P it holds is lent to them only when the
// runtime's monitor takes it back. On 2 CPUs (2026-12-07): direct 13.6 µs
// per op, goroutines 27 µs, the loop 71–81 µs (282–363 µs with GOMAXPROCS=1,
// 55 µs with 3). With 50 clients the loop is level (12.9 against 13.8 µs).
// The tunnel's own figures, with clients and servers in their own
// processes, are examples/bench's: there the loop costs what nginx does.
func BenchmarkPingPong(b *testing.B) {
	for _, f := range forwarders {
		for _, clients := range []int{1, 50} {
			b.Run(f.name+"/clients="+itoa(clients), func(b *testing.B) {
				_, target := startServer(b, func(c *net.TCPConn) {
					buf := make([]byte, pingSize)
					for {
						if _, err := io.ReadFull(c, buf); err != nil {
							return
						}
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				})
				addr := f.start(b, target)
				conns := make([]net.Conn, clients)
				for i := range conns {
					conns[i] = dial(b, addr)
				}
				measure(b, func() {
					var wg sync.WaitGroup
					for i, c := range conns {
						n := b.N / clients
						if i < b.N%clients {
							n++
						}
						wg.Add(1)
						go func() {
							defer wg.Done()
							buf := make([]byte, pingSize)
							for range n {
								if _, err := c.Write(buf); err != nil {
									b.Error(err)
									return
								}
								if _, err := io.ReadFull(c, buf); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
				})
			})
		}
	}
}

// BenchmarkBulk: one client streams to a server that discards; each op is
// 256 KiB.
func BenchmarkBulk(b *testing.B) {
	for _, f := range forwarders {
		b.Run(f.name, func(b *testing.B) {
			_, target := startServer(b, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
			addr := f.start(b, target)
			c := dial(b, addr)
			buf := make([]byte, bulkChunk)
			b.SetBytes(bulkChunk)
			measure(b, func() {
				for range b.N {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
