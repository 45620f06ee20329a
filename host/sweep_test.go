package host

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSweepParksIdlePumps checks that the pumps of idle filtered
// connections park (see park.go): no goroutine waits for them, which gives
// back the stack a filter call grew (as a call into a WebAssembly guest
// does, by tens of KiB), and the connections forward as before; and that a
// teardown while they are parked ends them at once.
func TestSweepParksIdlePumps(t *testing.T) {
	const conns = 100
	p, clients := deepStackClients(t, nil, conns)
	swept := watchSweeps(p)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// A pump parks once it has been idle across a whole sweep interval.
	waitSwept(t, swept, "parked", func() int { return parkedPumps(p) }, 2*conns)
	if n := pumpGoroutines(false); n != 0 {
		t.Errorf("%d goroutines still wait in a filtered pump with every pump parked", n)
	}
	p.mu.Lock()
	awake := len(p.awake)
	p.mu.Unlock()
	if awake != 0 {
		t.Errorf("%d connections left for the sweeps with every pump parked, want 0", awake)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	freed := (int64(before.StackInuse) - int64(after.StackInuse)) / conns
	t.Logf("stack per connection given back by parking: %d bytes (stacks in use %d -> %d KiB)", freed, before.StackInuse>>10, after.StackInuse>>10)
	if freed < 4<<10 {
		t.Errorf("parking the pumps gave back %d bytes of stack per connection, want at least 4 KiB", freed)
	}
	// Bytes wake a parked pump; a burst larger than a chunk comes back whole.
	for i, c := range clients {
		askEcho(t, c, strings.Repeat("x", i*1000+1))
	}
	// Parked again, then torn down: Close returns promptly and every
	// connection ends.
	waitSwept(t, swept, "parked", func() int { return parkedPumps(p) }, 2*conns)
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with parked pumps", d)
	}
	for _, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Fatalf("client of a closed proxy: read %v, want the connection closed", err)
		}
	}
	if n := openConns(p); len(n) != 0 {
		t.Errorf("%d connections still open after Close", len(n))
	}
}

// TestSweepMovesIdlePumps checks the fallback where pumps cannot park (no
// epoll, or the Parker failed): idle pumps move to fresh goroutines, which
// gives back the stack a filter call grew, and forward as before.
func TestSweepMovesIdlePumps(t *testing.T) {
	const conns = 100
	p, clients := deepStackClients(t, &Proxy{noPark: true}, conns)
	swept := watchSweeps(p)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// A pump moves once it has been idle across a whole sweep interval.
	waitSwept(t, swept, "waiting on a fresh goroutine", func() int { return pumpGoroutines(true) }, 2*conns)
	if n := parkedPumps(p); n != 0 {
		t.Errorf("%d pumps parked on a Proxy that cannot park", n)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	freed := (int64(before.StackInuse) - int64(after.StackInuse)) / conns
	t.Logf("stack per connection given back by the move: %d bytes (stacks in use %d -> %d KiB)", freed, before.StackInuse>>10, after.StackInuse>>10)
	if freed < 2<<10 {
		t.Errorf("moving the pumps gave back %d bytes of stack per connection, want at least 2 KiB", freed)
	}
	for i, c := range clients {
		askEcho(t, c, strings.Repeat("x", i+1))
	}
}

// deepStackClients starts p (nil: a default Proxy) with a route whose filter
// grows its pump's stack (deepStack) in front of an echo server, and opens n
// connections through it, each of which has echoed once.
func deepStackClients(t *testing.T, p *Proxy, n int) (*Proxy, []net.Conn) {
	p = startProxy(t, p, Route{Name: "s", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "deep", Hook: deepStack{}}}})
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = dialRoute(t, p, "s")
		askEcho(t, clients[i], "ping")
	}
	return p, clients
}

// pokeStorm pokes both directions of every connection of p with a pump
// running, again every interval (a poke every few reads, not a busy loop),
// until the function it returns is called; that function returns once the
// storm has stopped.
func pokeStorm(p *Proxy, interval time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			for _, c := range openConns(p) {
				if c.pumps.Load() > 0 {
					c.poke(ClientToServer)
					c.poke(ServerToClient)
				}
			}
			time.Sleep(interval)
		}
	}()
	return func() { close(quit); <-done }
}

// waitFinished waits until every connection p accepted has finished (its
// close logged and counted), or fails after d.
func waitFinished(t *testing.T, p *Proxy, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { p.connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%d connections still open %v %s", len(openConns(p)), d, what)
	}
}

// askEcho sends msg through an echo route and checks that it comes back.
func askEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %d bytes: got %d, %v", len(msg), len(got), err)
	}
}

// parkedPumps counts p's pumps that are parked.
func parkedPumps(p *Proxy) int {
	n := 0
	for _, c := range openConns(p) {
		c.dlMu.Lock()
		for d := range c.parkedOn {
			if c.parkedOn[d] != nil {
				n++
			}
		}
		c.dlMu.Unlock()
	}
	return n
}

// watchSweeps returns a channel that gets a value after p's sweeps. Each
// Proxy has its hook: tests that watch their own Proxy's sweeps run side
// by side.
func watchSweeps(p *Proxy) <-chan struct{} {
	swept := make(chan struct{}, 1)
	hook := func() {
		select {
		case swept <- struct{}{}:
		default:
		}
	}
	p.sweepHook.Store(&hook)
	return swept
}

// waitSwept waits, sweep after sweep, until count() reaches want; it
// fails after 20 sweeps.
func waitSwept(t *testing.T, swept <-chan struct{}, what string, count func() int, want int) {
	t.Helper()
	for sweeps := 0; ; sweeps++ {
		n := count()
		if n >= want {
			return
		}
		if sweeps == 20 {
			t.Fatalf("after %d sweeps, %d of %d pumps %s", sweeps, n, want, what)
		}
		select {
		case <-swept:
		case <-time.After(time.Minute):
			t.Fatal("no sweep within a minute")
		}
	}
}

// pumpGoroutines counts the goroutines waiting in a filtered pump; with
// moved, only those that a previous pump started (the ones a sweep moved).
func pumpGoroutines(moved bool) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "host.(*conn).filtered(") && (!moved || strings.Contains(g, "created by github.com/tunnelwasm/tunnel/host.(*conn).pump")) {
			n++
		}
	}
	return n
}

// deepStack is a hook whose filter grows the pump's stack by about 64 KiB on
// every chunk, then forwards it.
type deepStack struct{ PassThrough }

func (deepStack) Open(*ConnInfo) (Filter, error) { return deepStack{}, nil }

func (deepStack) Data(dir Direction, chunk []byte, s *Stream) error {
	growStack(256)
	return s.Send(dir, chunk)
}

// growStack recurses n frames of about 256 bytes each.
//
//go:noinline
func growStack(n int) byte {
	var frame [256]byte
	frame[n%len(frame)] = byte(n)
	if n == 0 {
		return frame[0]
	}
	return growStack(n-1) + frame[n%len(frame)]
}

// quitFilter answers "bye" to a client that sends "quit" and closes the
// connection; everything else passes.
type quitFilter struct{ PassThrough }

func (quitFilter) Open(*ConnInfo) (Filter, error) { return quitFilter{}, nil }

func (quitFilter) Data(dir Direction, chunk []byte, s *Stream) error {
	if dir == ClientToServer && string(chunk) == "quit" {
		if err := s.Send(ServerToClient, []byte("bye")); err != nil {
			return err
		}
		s.Close()
		return nil
	}
	return s.Send(dir, chunk)
}

// TestSweepThenFilterClose checks that a connection whose pumps were moved
// still closes gracefully when a filter asks: the answer arrives whole,
// followed by a clean end of stream, not a reset.
func TestSweepThenFilterClose(t *testing.T) {
	t.Parallel()
	p := startProxy(t, nil, Route{Name: "q", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "quit", Hook: quitFilter{}}}})
	swept := watchSweeps(p)
	c := dialRoute(t, p, "q")
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	waitSwept(t, swept, "parked", func() int { return parkedPumps(p) }, 2)
	if _, err := io.WriteString(c, "quit"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after quit: got %q, %v; want \"bye\" and a clean end of stream", rest, err)
	}
}

// TestPokeStorm pokes both directions of every connection every few
// microseconds while four clients each echo 4 MiB in uneven writes, on a
// filtered route, on one whose only filtering is an idle timeout, and on a
// spliced one: every byte comes back, in order, and no connection is
// aborted.
func TestPokeStorm(t *testing.T) {
	t.Parallel()
	id := ChunkFunc(func(_ *ConnInfo, _ Direction, b []byte) ([]byte, error) { return b, nil })
	for _, r := range []Route{
		{Name: "filtered", Listen: "127.0.0.1:0", Chain: []Link{{Name: "id", Hook: id}}},
		{Name: "idle-timeout", Listen: "127.0.0.1:0", IdleTimeout: time.Minute},
		{Name: "spliced", Listen: "127.0.0.1:0"},
	} {
		t.Run(r.Name, func(t *testing.T) {
			r.Target = echoServer(t)
			p := startProxy(t, nil, r)
			stopStorm := pokeStorm(p, 20*time.Microsecond)
			var wg sync.WaitGroup
			for k := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("tcp", p.Addr(r.Name).String())
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(time.Minute))
					data := make([]byte, 4<<20)
					rng := rand.New(rand.NewPCG(uint64(k), 1))
					for i := range data {
						data[i] = byte(rng.Uint32())
					}
					go func() {
						for off := 0; off < len(data); {
							n := min(1+rng.IntN(7000), len(data)-off)
							if _, err := c.Write(data[off : off+n]); err != nil {
								return
							}
							off += n
						}
						c.(*net.TCPConn).CloseWrite()
					}()
					got, err := io.ReadAll(c)
					if err != nil || !bytes.Equal(got, data) {
						t.Errorf("connection %d: got %d of %d bytes, equal %v, err %v", k, len(got), len(data), bytes.Equal(got, data), err)
					}
				}()
			}
			wg.Wait()
			stopStorm()
		})
	}
}

// TestPokeAfterCloseIsIgnored checks the guard that keeps a poke from cutting
// a filter's lingering close short: once the connection is closing, a poke
// sets no deadline, and the client still gets the answer and a clean end.
func TestPokeAfterCloseIsIgnored(t *testing.T) {
	// Serial, and judged on what its own pokes change: a sweep of the
	// Proxy's idle pumps may have poked the connection before the close,
	// its pump not yet woken by it (alongside the parallel tests under
	// -race, once in CI: poked [true false]).
	p := startProxy(t, nil, Route{Name: "q", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "quit", Hook: quitFilter{}}}})
	c := dialRoute(t, p, "q")
	if _, err := io.WriteString(c, "quit"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c) // "bye", then the FIN of the graceful close
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after quit: got %q, %v", rest, err)
	}
	cs := openConns(p)
	if len(cs) != 1 {
		t.Fatalf("%d connections open during the linger, want 1", len(cs))
	}
	tc := cs[0]
	tc.dlMu.Lock()
	before := tc.poked
	tc.dlMu.Unlock()
	tc.poke(ClientToServer)
	tc.poke(ServerToClient)
	tc.dlMu.Lock()
	poked := tc.poked
	tc.dlMu.Unlock()
	if poked != before {
		t.Fatalf("poke set a deadline on a closing connection (poked %v, %v before): it would end the linger at once", poked, before)
	}
	// The linger still reads and drops what the client sends.
	if _, err := io.WriteString(c, "junk after the close"); err != nil {
		t.Fatal(err)
	}
}

// serve runs handle, then closes the connection, for every connection
// accepted on a loopback listener, until the test ends; it returns the
// listener's address.
func serve(t *testing.T, handle func(c net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { handle(c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// echo sends back what it reads. It copies through a buffer: io.Copy
// between two TCP connections would splice and hold a pipe per connection,
// which TestIdleSplicedConnectionsHoldNoPipe would count.
func echo(c net.Conn) { io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c}) }

// echoServer serves echo on loopback until the test ends.
func echoServer(t *testing.T) string { return serve(t, echo) }

// startProxy applies routes to p (a Proxy that logs nowhere when nil) and
// closes it when the test ends.
func startProxy(t *testing.T, p *Proxy, routes ...Route) *Proxy {
	if p == nil {
		p = &Proxy{}
	}
	p.Logger = slog.New(slog.DiscardHandler)
	if err := p.Apply(routes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialRoute connects to route name of p, with a minute's deadline; the
// connection is closed when the test ends.
func dialRoute(t *testing.T, p *Proxy, name string) *net.TCPConn {
	c, err := net.Dial("tcp", p.Addr(name).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	return c.(*net.TCPConn)
}

// openConns lists the proxy's open connections.
func openConns(p *Proxy) []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// holdOpen is a hook whose Opened waits until released: the client's bytes
// and FIN are both queued at the tunnel before its first read.
type holdOpen struct {
	PassThrough
	release chan struct{}
}

func (h holdOpen) Open(*ConnInfo) (Filter, error) { return h, nil }

func (h holdOpen) Opened(*Stream) error { <-h.release; return nil }

// TestBytesAndFINInOneRead checks that a pump that reads a client's last
// bytes and finds its FIN already queued passes both on, on a filtered and
// on a spliced client -> server direction: the FIN comes with no readiness
// event of its own, so a pump that waited for one after a short read would
// hang (here, with no sweep to rescue it, until the test's deadline).
func TestBytesAndFINInOneRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		dirs Directions
	}{{"filtered", Both}, {"spliced", OnlyServerToClient}} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 1)
			target := serve(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(time.Minute))
				b, err := io.ReadAll(c) // until the FIN the tunnel passes on
				if err != nil {
					got <- err.Error()
					return
				}
				got <- string(b)
				io.WriteString(c, "ok")
			})
			h := holdOpen{release: make(chan struct{})}
			p := startProxy(t, &Proxy{noSweep: true}, Route{Name: "f", Listen: "127.0.0.1:0", Target: target, Chain: []Link{{Name: "hold", Hook: h, Directions: tc.dirs}}})
			c := dialRoute(t, p, "f")
			if _, err := io.WriteString(c, "last words"); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			close(h.release)
			if s := <-got; s != "last words" {
				t.Fatalf("server got %q", s)
			}
			if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
				t.Fatalf("client got %q, %v", b, err)
			}
		})
	}
}

// TestNoBytesFromAnotherConnection resets connections in the middle of
// spliced downloads, then checks that fresh connections get exactly their
// own bytes: a pipe left holding bytes must never be reused.
func TestNoBytesFromAnotherConnection(t *testing.T) {
	big := bytes.Repeat([]byte("A"), 8<<20)
	target := serve(t, func(c net.Conn) {
		cmd := make([]byte, 1)
		if _, err := io.ReadFull(c, cmd); err != nil {
			return
		}
		if cmd[0] == 'd' {
			c.Write(big) // until the client resets
			return
		}
		echo(c)
	})
	p := startProxy(t, nil, Route{Name: "s", Listen: "127.0.0.1:0", Target: target})
	for i := range 5 {
		d := dialRoute(t, p, "s")
		io.WriteString(d, "d")
		io.ReadFull(d, make([]byte, 64<<10)) // the download is under way
		d.SetLinger(0)
		d.Close() // reset

		e := dialRoute(t, p, "s")
		msg := fmt.Sprintf("echo %d", i)
		io.WriteString(e, "e"+msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(e, got); err != nil || string(got) != msg {
			t.Fatalf("round %d: echo got %q, %v; want %q", i, got, err, msg)
		}
		e.Close()
	}
}

// TestIdleSplicedConnectionsHoldNoPipe checks that a spliced connection
// holds its pipes only while bytes are in flight: once idle, each
// connection costs its sockets alone (here 4 descriptors: the client's,
// the tunnel's two, the echo server's), where a pipe per direction would
// add 4 more.
func TestIdleSplicedConnectionsHoldNoPipe(t *testing.T) {
	p := startProxy(t, nil, Route{Name: "s", Listen: "127.0.0.1:0", Target: echoServer(t)})
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	const conns = 50
	before := fds()
	for range conns {
		c := dialRoute(t, p, "s")
		msg := strings.Repeat("z", 100<<10) // more than one splice's worth for a small pipe
		go io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
	}
	per := float64(fds()-before) / conns
	t.Logf("descriptors per idle spliced connection (client, tunnel x2, server): %.2f", per)
	if per > 4.5 {
		t.Errorf("%.2f descriptors per idle connection, want 4 (no pipe held while idle)", per)
	}
}

// TestParkedConnectionIdleTimeout checks that the idle timeout ends a
// connection whose pumps are parked: no goroutine waits on its sockets, yet
// the client sees it closed and the close is counted as idle.
func TestParkedConnectionIdleTimeout(t *testing.T) {
	t.Parallel()
	id := ChunkFunc(func(_ *ConnInfo, _ Direction, b []byte) ([]byte, error) { return b, nil })
	p := startProxy(t, nil, Route{Name: "i", Listen: "127.0.0.1:0", Target: echoServer(t), IdleTimeout: time.Second, Chain: []Link{{Name: "id", Hook: id}}})
	swept := watchSweeps(p)
	c := dialRoute(t, p, "i")
	askEcho(t, c, "ping")
	waitSwept(t, swept, "parked", func() int { return parkedPumps(p) }, 2)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("idle client: read %d, %v; want the connection closed by the idle timeout", n, err)
	}
	// Counted before the sockets closed (abortCounting).
	if st := p.Stats(); len(st) != 1 || st[0].IdleTimeouts != 1 {
		t.Fatalf("stats after the idle close: %+v, want one idle timeout", st)
	}
}

// splitEcho forwards each client chunk as its first byte, a marker, then the
// rest (parts of the chunk itself and bytes of its own, in one callback),
// and answers the client with the chunk's last byte: what is written from
// the chunk without a copy (chain.lent, Stream.Forward) and what is copied
// keep their order.
type splitEcho struct{ PassThrough }

func (splitEcho) Open(*ConnInfo) (Filter, error) { return splitEcho{}, nil }

func (splitEcho) Data(dir Direction, chunk []byte, s *Stream) error {
	if dir == ServerToClient {
		return s.Send(dir, chunk)
	}
	if err := s.Forward(ServerToClient, chunk[len(chunk)-1:]); err != nil {
		return err
	}
	if err := s.Forward(dir, chunk[:1]); err != nil { // written from the chunk
		return err
	}
	if err := s.Send(dir, []byte("|")); err != nil { // copied behind it
		return err
	}
	return s.Forward(dir, chunk[1:]) // behind the copy: copied too

}

func TestLentChunksKeepTheirOrder(t *testing.T) {
	t.Parallel()
	// The server collects what it gets; the client reads its answers.
	got := make(chan []byte, 1)
	target := serve(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- b
		c.Close()
	})
	p := startProxy(t, nil, Route{Name: "l", Listen: "127.0.0.1:0", Target: target, Chain: []Link{{Name: "split", Hook: splitEcho{}}}})
	c := dialRoute(t, p, "l")
	var want, answers bytes.Buffer
	for i := range 50 {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*100))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		// One chunk per message: wait for its answer before the next.
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		answers.Write(b)
		want.WriteString(msg[:1] + "|" + msg[1:])
		if b[0] != msg[len(msg)-1] {
			t.Fatalf("answer %d: %q, want %q", i, b, msg[len(msg)-1:])
		}
	}
	c.CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("server got %d bytes, want %d; first difference at %d", len(b), want.Len(), firstDiff(b, want.Bytes()))
		}
	case <-time.After(time.Minute):
		t.Fatal("server saw no end of stream within a minute")
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
