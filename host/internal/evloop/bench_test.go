//go:build linux

package evloop

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// pingSize is the size of a ping-pong message (a small Redis GET).
	pingSize = 32
	// bulkChunk is the bytes sent per op by BenchmarkBulk.
	bulkChunk = 256 << 10
)

// forwarder starts a forwarder to target and returns its address, plus a
// function returning the CPU time its own thread used (nil if unknown).
type forwarder func(b *testing.B, target netip.AddrPort) (addr string, loopCPU func() time.Duration)

var forwarders = []struct {
	name  string
	start forwarder
}{
	{"evloop-splice", loopForwarder(false)},
	{"evloop-readwrite", loopForwarder(true)},
	{"goroutines", goroutineForwarder},
}

func loopForwarder(readWrite bool) forwarder {
	return func(b *testing.B, target netip.AddrPort) (string, func() time.Duration) {
		l, _, _, addr := startForwarder(b, target, fwdOptions{readWrite: readWrite})
		return addr, func() time.Duration {
			var ts unix.Timespec
			inspect(b, l, func() { unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) })
			return time.Duration(ts.Nano())
		}
	}
}

// goroutineForwarder is the naive forwarder: two goroutines and io.Copy
// (which splices on Linux) per connection.
func goroutineForwarder(b *testing.B, target netip.AddrPort) (string, func() time.Duration) {
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
	return ln.Addr().String(), nil
}

// processCPU is the user+system CPU time of the process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs the timed part and reports CPU per op.
func measure(b *testing.B, loopCPU func() time.Duration, run func()) {
	var loop0 time.Duration
	if loopCPU != nil {
		loop0 = loopCPU()
	}
	cpu0 := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	run()
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	if loopCPU != nil {
		b.ReportMetric(float64(loopCPU()-loop0)/float64(b.N), "loop-cpu-ns/op")
	}
}

// BenchmarkPingPong: each op is one 32-byte request and its 32-byte echo
// through the forwarder, with 1 or 50 clients in flight.
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
				addr, loopCPU := f.start(b, target)
				conns := make([]net.Conn, clients)
				for i := range conns {
					conns[i] = dial(b, addr)
				}
				measure(b, loopCPU, func() {
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
			addr, loopCPU := f.start(b, target)
			c := dial(b, addr)
			buf := make([]byte, bulkChunk)
			b.SetBytes(bulkChunk)
			measure(b, loopCPU, func() {
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
