//go:build linux

package evloop

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// funcChain is a Chain made of functions; a nil one does the obvious:
// Data forwards, End passes the FIN on.
type funcChain struct {
	open  func(o *Output) error
	data  func(from int, b []byte, o *Output) error
	end   func(from int, o *Output) error
	timer func(o *Output) error
}

func (f *funcChain) Open(o *Output) error {
	if f.open != nil {
		return f.open(o)
	}
	return nil
}

func (f *funcChain) Connected(*Output) error { return nil }

func (f *funcChain) Data(from int, b []byte, o *Output) error {
	if f.data != nil {
		return f.data(from, b, o)
	}
	o.Write(1-from, b)
	return nil
}

func (f *funcChain) End(from int, o *Output) error {
	if f.end != nil {
		return f.end(from, o)
	}
	o.CloseWrite(1 - from)
	return nil
}

func (f *funcChain) Timer(o *Output) error {
	if f.timer != nil {
		return f.timer(o)
	}
	return nil
}

// chainAcceptor plans every connection to target through a fresh chain.
type chainAcceptor struct {
	target   netip.AddrPort
	chain    func() Chain
	filtered [2]bool          // Plan.Filtered
	read     [2]atomic.Int64  // Plan.Read of the last connection
	paused   [2]atomic.Uint64 // Plan.Paused of every connection
	done     chan Stats
	accepted atomic.Int64
}

func (a *chainAcceptor) Admit() bool { return true }

func (a *chainAcceptor) Accepted(fd int, peer netip.AddrPort) *Plan {
	a.accepted.Add(1)
	return &Plan{Target: a.target, DialTimeout: testWait, Chain: a.chain(), Filtered: a.filtered,
		Read: &a.read, Paused: &a.paused, Done: func(s Stats) { a.done <- s }}
}

// startChained starts a loop forwarding a new listener to target through
// the chains made by chain.
func startChained(t *testing.T, target netip.AddrPort, chain func() Chain) (*chainAcceptor, string) {
	t.Helper()
	return startFiltered(t, target, [2]bool{true, true}, chain)
}

// startFiltered is startChained with the chain filtering only the
// directions filtered names.
func startFiltered(t *testing.T, target netip.AddrPort, filtered [2]bool, chain func() Chain) (*chainAcceptor, string) {
	t.Helper()
	a := &chainAcceptor{target: target, chain: chain, filtered: filtered, done: make(chan Stats, 100)}
	_, addr := startAccepting(t, a)
	return a, addr
}

// startAccepting starts a loop serving a new listener with a, and returns
// the loop and the listener's address.
func startAccepting(t *testing.T, a Acceptor) (*Loop, string) {
	t.Helper()
	l, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	fd, addr := listenFD(t)
	if _, err := l.AddListener(fd, a); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return l, addr.String()
}

func (a *chainAcceptor) waitDone(t *testing.T) Stats {
	t.Helper()
	return (&testAcceptor{done: a.done}).waitDone(t)
}

// TestChainRewritesAndReplies: the chain upper-cases what the client sends,
// answers each client chunk with "+" itself, and passes each FIN on; the
// figures count what was read and written on each side.
func TestChainRewritesAndReplies(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	a, addr := startChained(t, target, func() Chain {
		return &funcChain{data: func(from int, b []byte, o *Output) error {
			if from == int(client) {
				o.Write(int(client), []byte("+"))
				b = bytes.ToUpper(b)
			}
			o.Write(1-from, b)
			return nil
		}}
	})
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(testWait))
	io.WriteString(c, "abc")
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "+ABC" {
		t.Fatalf("got %q, %v; want \"+ABC\"", got, err)
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the half-close: %q, %v; want a clean EOF", rest, err)
	}
	s := a.waitDone(t)
	if s.Reason != Ended || s.Err != nil {
		t.Errorf("end: %v, %v; want Ended", s.Reason, s.Err)
	}
	if s.Read != [2]int64{3, 3} || s.Written != [2]int64{3, 4} {
		t.Errorf("read %v, written %v; want [3 3] and [3 4]", s.Read, s.Written)
	}
}

// TestChainBackpressure: a server that never reads stops the loop reading
// the client (the loop holds at most what the kernel's buffers and one
// chunk take), and an Abort from another goroutine then resets both sides.
func TestChainBackpressure(t *testing.T) {
	checkFDs(t)
	hold := make(chan struct{})
	_, target := startServer(t, func(c *net.TCPConn) { <-hold })
	defer close(hold)
	outs := make(chan *Output, 1)
	a, addr := startChained(t, target, func() Chain {
		return &funcChain{open: func(o *Output) error { outs <- o; return nil }}
	})
	c := dial(t, addr)
	o := <-outs
	// Write until the tunnel stops taking bytes: the write deadline ends
	// it whatever the machine's speed.
	c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	sent := 0
	chunk := make([]byte, 64<<10)
	for sent < 256<<20 {
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	if sent >= 256<<20 {
		t.Fatalf("the client wrote %d MiB into a tunnel whose server never reads", sent>>20)
	}
	const bound = 16 << 20 // socket buffers on both sides, plus one chunk
	if r := a.read[client].Load(); r > bound {
		t.Errorf("the loop read %d bytes from the client; want at most %d while the server reads nothing", r, bound)
	}
	cause := errors.New("test abort")
	o.Abort(cause)
	s := a.waitDone(t)
	if s.Err != cause {
		t.Errorf("Done: %v, want the abort's cause", s.Err)
	}
	c.SetReadDeadline(time.Now().Add(testWait))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the abort: %v, want a reset", err)
	}
}

// TestChainCloseBeforeDial: a chain that answers and closes in Open gets
// its answer to the client, then a clean end, and the target is never
// dialled.
func TestChainCloseBeforeDial(t *testing.T) {
	checkFDs(t)
	var dialled atomic.Int64
	_, target := startServer(t, func(*net.TCPConn) { dialled.Add(1) })
	a, addr := startChained(t, target, func() Chain {
		return &funcChain{open: func(o *Output) error {
			o.Write(int(client), []byte("busy\n"))
			o.Close()
			return nil
		}}
	})
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(testWait))
	if got, err := io.ReadAll(c); err != nil || string(got) != "busy\n" {
		t.Fatalf("client got %q, %v; want \"busy\\n\" and a clean EOF", got, err)
	}
	c.Close()
	s := a.waitDone(t)
	if s.Err != nil || s.Connected {
		t.Errorf("Done: err %v, connected %v; want a clean end without a dial", s.Err, s.Connected)
	}
	if n := dialled.Load(); n != 0 {
		t.Errorf("the target got %d connections, want none", n)
	}
}

// TestChainTimerHoldsAndDefersFIN: the chain holds the client's bytes and
// writes them from its timer, and passes the client's FIN on only after
// them.
func TestChainTimerHoldsAndDefersFIN(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	a, addr := startChained(t, target, func() Chain {
		var held []byte
		var ended bool
		return &funcChain{
			data: func(from int, b []byte, o *Output) error {
				if from == int(server) {
					o.Write(int(client), b)
					return nil
				}
				held = append(held, b...)
				o.SetTimer(10 * time.Millisecond)
				return nil
			},
			end: func(from int, o *Output) error {
				if from == int(client) {
					ended = true // the timer passes it on after the held bytes
					o.SetTimer(10 * time.Millisecond)
					return nil
				}
				o.CloseWrite(int(client))
				return nil
			},
			timer: func(o *Output) error {
				o.Write(int(server), held)
				held = held[:0]
				if ended {
					o.CloseWrite(int(server))
				}
				return nil
			},
		}
	})
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(testWait))
	io.WriteString(c, "held ")
	io.WriteString(c, "bytes")
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "held bytes" {
		t.Fatalf("client got %q, %v; want \"held bytes\" and a clean EOF", got, err)
	}
	if s := a.waitDone(t); s.Reason != Ended || s.Err != nil {
		t.Errorf("end: %v, %v; want Ended", s.Reason, s.Err)
	}
}

// TestChainWriteTowardPlainDirection: a Chain that filters only client ->
// server and writes toward the client (whose bytes the loop forwards
// without it) ends the connection with an error that says so, instead of
// bytes out of order with the server's or dropped at the end. The host
// never does it (Stream.Send toward a direction no filter sees is
// ErrNotAttached); the loop enforces it.
func TestChainWriteTowardPlainDirection(t *testing.T) {
	for _, call := range []string{"Write", "CloseWrite"} {
		t.Run(call, func(t *testing.T) {
			checkFDs(t)
			_, target := startServer(t, echo)
			a, addr := startFiltered(t, target, [2]bool{true, false}, func() Chain {
				return &funcChain{data: func(from int, b []byte, o *Output) error {
					if call == "Write" {
						o.Write(int(client), []byte("+"))
					} else {
						o.CloseWrite(int(client))
					}
					o.Write(1-from, b)
					return nil
				}}
			})
			c := dial(t, addr)
			c.SetDeadline(time.Now().Add(testWait))
			io.WriteString(c, "abc")
			if got, err := io.ReadAll(c); len(got) != 0 || err == nil {
				t.Errorf("client got %q, %v; want nothing and a reset", got, err)
			}
			s := a.waitDone(t)
			want := "evloop: Chain called Output." + call + " toward the client, but the direction toward it is not filtered (Plan.Filtered[1] is false): its bytes are forwarded without the Chain"
			if s.Reason != Failed || s.Err == nil || s.Err.Error() != want {
				t.Errorf("end: %v, %v; want Failed with %q", s.Reason, s.Err, want)
			}
		})
	}
}

// TestChainTimerWritesHoldBackTheirSource: a Chain that delays the server's
// bytes (pausing the server's reads while it holds a chunk, as a filter
// that delays bytes does) and writes them from its timer, toward a client
// that never reads, stops the loop reading the server once they wait: they
// are charged to the server, as a chunk's output is. Before, each timer
// write queued another chunk and resumed the server, until the 64 MiB bound
// ended the connection.
func TestChainTimerWritesHoldBackTheirSource(t *testing.T) {
	checkFDs(t)
	sent := make(chan int, 1)
	_, target := startServer(t, func(c *net.TCPConn) {
		// Write until the tunnel stops taking bytes: the write deadline
		// ends it whatever the machine's speed.
		c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n := 0
		chunk := make([]byte, 64<<10)
		for n < 256<<20 {
			k, err := c.Write(chunk)
			n += k
			if err != nil {
				break
			}
		}
		sent <- n
	})
	outs := make(chan *Output, 1)
	var acc atomic.Pointer[chainAcceptor] // set before the client dials
	a, addr := startChained(t, target, func() Chain {
		var held []byte
		return &funcChain{
			open: func(o *Output) error { outs <- o; return nil },
			data: func(from int, b []byte, o *Output) error {
				if from == int(client) {
					o.Write(int(server), b)
					return nil
				}
				held = append(held, b...)
				acc.Load().paused[server].Store(1)
				o.SetTimer(0)
				return nil
			},
			timer: func(o *Output) error {
				o.Write(int(client), held)
				held = nil
				acc.Load().paused[server].Store(0)
				o.Wake()
				return nil
			},
		}
	})
	acc.Store(a)
	c := dial(t, addr)
	o := <-outs
	if n := <-sent; n >= 256<<20 {
		t.Fatalf("the server wrote %d MiB toward a client that reads nothing", n>>20)
	}
	const bound = 16 << 20 // socket buffers on both sides, plus one chunk
	if r := a.read[server].Load(); r > bound {
		t.Errorf("the loop read %d bytes from the server; want at most %d while the client reads nothing", r, bound)
	}
	o.Abort(errors.New("test abort"))
	a.waitDone(t)
	c.Close()
}
