package host_test

// Byte-exactness of the forwarding paths over real loopback sockets: the
// kernel splice path (no hook) and the filtered path (a pass-through hook)
// must deliver the same bytes, honour half-closes, never deadlock when the
// server speaks first, and keep 200 connections independent.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// identity is the filtered path with nothing changed: every chunk is read
// into user space, handed to a hook and written out again.
var identity = host.ChunkFunc(func(_ *host.ConnInfo, _ host.Direction, chunk []byte) ([]byte, error) {
	return chunk, nil
})

// forwardPath is one way the tunnel can move a route's bytes.
type forwardPath struct {
	name  string
	route func(target string) host.Route
}

// forwardPaths are the paths every byte-exactness test runs on.
var forwardPaths = []forwardPath{
	// No hook, an IP target: the event loop (read/write, splice for bulk).
	{"loop", func(target string) host.Route { return tn.Route("test", target) }},
	// The same with an idle timeout: the loop's timers.
	{"loop-idle", func(target string) host.Route {
		r := tn.Route("test", target)
		r.IdleTimeout = time.Minute
		return r
	}},
	// No hook, a target by name (resolving it would block the loop): a
	// goroutine per direction, spliced by the kernel.
	{"splice", func(target string) host.Route { return tn.Route("test", byName(target)) }},
	// A pass-through hook on both streams: read, filter, write.
	{"filtered", func(target string) host.Route {
		return tn.Route("test", target, host.Link{Name: "identity", Hook: identity})
	}},
	// A hook on client -> server only: that stream filtered, the other spliced.
	{"one-way", func(target string) host.Route {
		return tn.Route("test", target, host.Link{Name: "identity", Hook: identity, Directions: host.OnlyClientToServer})
	}},
	// A pass-through hook that says it never blocks: the route's own event
	// loop reads, filters and writes.
	{"inline", func(target string) host.Route {
		return tn.Route("test", target, host.Link{Name: "identity", Hook: inlineHook{identity}})
	}},
	// The same on client -> server only: the other stream spliced by the
	// route's loop.
	{"inline-one-way", func(target string) host.Route {
		return tn.Route("test", target, host.Link{Name: "identity", Hook: inlineHook{identity}, Directions: host.OnlyClientToServer})
	}},
	// No hook, a target by name, an idle timeout: copied in user space to
	// see activity.
	{"idle-timeout", func(target string) host.Route {
		r := tn.Route("test", byName(target))
		r.IdleTimeout = time.Minute
		return r
	}},
}

// engine is one of the two engines a filtered route runs on: goroutines
// (two per connection) or, when every hook is inline, the route's own event
// loop.
type engine struct{ inline bool }

// engines runs f on both engines, in parallel.
func engines(t *testing.T, f func(t *testing.T, eng engine)) {
	t.Parallel()
	for _, e := range []engine{{false}, {true}} {
		name := "goroutines"
		if e.inline {
			name = "inline"
		}
		t.Run(name, func(t *testing.T) { t.Parallel(); f(t, e) })
	}
}

// enginesSeq runs f on both engines, one after the other.
func enginesSeq(t *testing.T, f func(t *testing.T, eng engine)) {
	t.Run("goroutines", func(t *testing.T) { f(t, engine{false}) })
	t.Run("inline", func(t *testing.T) { f(t, engine{true}) })
}

// links returns chain with every hook made inline on the inline engine.
func (e engine) links(chain []host.Link) []host.Link {
	if !e.inline {
		return chain
	}
	out := make([]host.Link, len(chain))
	for i, l := range chain {
		l.Hook = inlineHook{l.Hook}
		out[i] = l
	}
	return out
}

// tunnel is tunnel on this engine.
func (e engine) tunnel(t *testing.T, r host.Route) (string, *tn.Logs) {
	r.Chain = e.links(r.Chain)
	return tunnel(t, r)
}

// Tunnel is tn.Tunnel on this engine.
func (e engine) Tunnel(t *testing.T, target string, chain ...host.Link) (string, *host.Proxy, *tn.Logs) {
	return tn.Tunnel(t, target, e.links(chain)...)
}

// inlineHook makes a hook an InlineHook: its route runs on an event loop
// of its own.
type inlineHook struct{ host.Hook }

func (inlineHook) Inline() bool { return true }

// byName turns 127.0.0.1:port into localhost:port: a target the event loop
// leaves to the goroutine engine.
func byName(target string) string {
	return "localhost:" + target[strings.LastIndexByte(target, ':')+1:]
}

// paths runs f once per forwarding path, in parallel.
func paths(t *testing.T, f func(t *testing.T, route func(target string) host.Route)) {
	for _, p := range forwardPaths {
		t.Run(p.name, func(t *testing.T) { t.Parallel(); f(t, p.route) })
	}
}

// tunnel starts a proxy serving r and returns the address to dial.
func tunnel(t *testing.T, r host.Route) (string, *tn.Logs) {
	t.Helper()
	p, logs := tn.Proxy(t, r)
	return p.Addr(r.Name).String(), logs
}

func TestServerSpeaksFirst(t *testing.T) {
	t.Parallel()
	paths(t, func(t *testing.T, route func(string) host.Route) {
		srv := tn.Serve(t, tn.SpeakFirst)
		addr, _ := tunnel(t, route(srv.Addr()))
		c := tn.Dial(t, addr)
		// Read before writing anything: a tunnel that waits for the
		// client's first byte before dialling or reading would hang here.
		got := make([]byte, len(tn.Welcome))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the welcome before writing: %v", err)
		}
		if string(got) != tn.Welcome {
			t.Fatalf("got %q, want %q", got, tn.Welcome)
		}
		// And the conversation goes on both ways afterwards.
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, 5)
		if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "ping\n" {
			t.Fatalf("echo after welcome: %q, %v", echo, err)
		}
	})
}

// halfCloseServer reads to EOF, then replies with twice as many bytes and
// closes, reporting what it read.
func halfCloseServer(reply []byte, got chan<- tn.Received) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		r := tn.ReadSum(c)
		got <- r
		if r.Err != nil {
			return
		}
		c.Write(reply)
	}
}

func TestHalfClose(t *testing.T) {
	t.Parallel()
	paths(t, func(t *testing.T, route func(string) host.Route) {
		up := bytes.Repeat([]byte("Hello from the client! "), 1000)   // 23,000 bytes
		down := bytes.Repeat([]byte("Hello from the server! "), 2000) // 46,000 bytes
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, halfCloseServer(down, serverGot))
		addr, logs := tunnel(t, route(srv.Addr()))

		c := tn.Dial(t, addr)
		if _, err := c.Write(up); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// The server only replies after it sees EOF, so this read proves
		// the half-close crossed the tunnel while the other way stayed open.
		got := tn.ReadSum(c)
		if got.Err != nil {
			t.Fatalf("client read: %v", got.Err)
		}
		s := tn.Wait(t, serverGot, "what the server received")
		if s.Err != nil || s.N != int64(len(up)) || s.Sum != tn.Sum(up) {
			t.Fatalf("server got %d bytes (sha %s, err %v), want %d (sha %s)", s.N, s.Sum, s.Err, len(up), tn.Sum(up))
		}
		if got.N != int64(len(down)) || got.Sum != tn.Sum(down) {
			t.Fatalf("client got %d bytes (sha %s), want %d (sha %s)", got.N, got.Sum, len(down), tn.Sum(down))
		}
		logs.Wait(t, "connection closed", "bytes_from_client=23000 bytes_to_server=23000 bytes_from_server=46000 bytes_to_client=46000")
	})
}

// TestServerHalfClosesFirst is the half-close the other way round: the
// server sends its 46,000 bytes and half-closes first, then reads the
// client's 23,000 bytes, which the client only sends once it has seen the
// server's end.
func TestServerHalfClosesFirst(t *testing.T) {
	t.Parallel()
	paths(t, func(t *testing.T, route func(string) host.Route) {
		up := tn.Random(11, 23000)
		down := tn.Random(12, 46000)
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) {
			c.Write(down)
			c.CloseWrite()
			serverGot <- tn.ReadSum(c)
		})
		addr, _ := tunnel(t, route(srv.Addr()))
		c := tn.Dial(t, addr)
		got := tn.ReadSum(c)
		if got.Err != nil || got.N != int64(len(down)) || got.Sum != tn.Sum(down) {
			t.Fatalf("client got %d bytes sha %s (err %v), want %d sha %s", got.N, got.Sum, got.Err, len(down), tn.Sum(down))
		}
		if _, err := c.Write(up); err != nil {
			t.Fatalf("client writes after the server's half-close: %v", err)
		}
		c.CloseWrite()
		s := tn.Wait(t, serverGot, "what the server received")
		if s.Err != nil || s.N != int64(len(up)) || s.Sum != tn.Sum(up) {
			t.Errorf("server got %d bytes sha %s (err %v), want %d sha %s", s.N, s.Sum, s.Err, len(up), tn.Sum(up))
		}
	})
}

// TestBulkBothWays moves 64 MiB each way at the same time through one
// connection: each side writes while it reads, so a tunnel that forwards
// one direction at a time, or loses a chunk, fails.
//
// Both ends' deadlines are counted from their last progress
// (tn.ExchangeBulk), and the wait for the server is bounded: on a loaded
// machine the eight paths at once under -race can take longer than
// tn.Timeout, and with the client's deadline counted from the dial the
// client gave up mid-transfer while the test waited, without bound, for a
// server that would never get the rest nor a FIN (reproduced with CPU hogs
// sharing one core: every loop idle in epoll_wait, the test blocked on
// serverGot until -timeout).
func TestBulkBothWays(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	up := tn.Random(1, size)
	down := tn.Random(2, size)
	paths(t, func(t *testing.T, route func(string) host.Route) {
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) { serverGot <- tn.ExchangeBulk(c, down) })
		addr, _ := tunnel(t, route(srv.Addr()))
		c := tn.Dial(t, addr)
		got := tn.ExchangeBulk(c, up)
		if got.Err != nil {
			c.Close() // the server's exchange ends now, with a reset
		}
		var s tn.Received
		select {
		case s = <-serverGot:
		case <-time.After(2 * tn.Timeout):
			t.Fatalf("the server's exchange did not end (client read %d bytes, err %v)", got.N, got.Err)
		}
		if got.Err != nil || s.Err != nil {
			t.Fatalf("client err %v, server err %v", got.Err, s.Err)
		}
		if s.N != size || s.Sum != tn.Sum(up) {
			t.Errorf("server got %d bytes sha %s, want %d sha %s", s.N, s.Sum, size, tn.Sum(up))
		}
		if got.N != size || got.Sum != tn.Sum(down) {
			t.Errorf("client got %d bytes sha %s, want %d sha %s", got.N, got.Sum, size, tn.Sum(down))
		}
	})
}

// TestManyConnections runs 200 connections at once, each with its own
// payload, while a stuck client (connected, never reads nor writes) sits on
// the same route: it must block neither the accept loop nor the others.
func TestManyConnections(t *testing.T) {
	t.Parallel()
	// At most two paths at a time (as under -parallel 2): with the eight
	// at once that TestMain's -parallel 8 would allow, 1,600 connections
	// and their splice pipes (the echo's, freed only by a later GC) once
	// ran a loaded machine's test process out of its 20,000 descriptors.
	slots := make(chan struct{}, 2)
	paths(t, func(t *testing.T, route func(string) host.Route) {
		slots <- struct{}{}
		defer func() { <-slots }()
		const conns = 200
		srv := tn.Serve(t, tn.Echo)
		addr, _ := tunnel(t, route(srv.Addr()))

		stuck := tn.Dial(t, addr) // never reads nor writes until the end
		srv.WaitAccepted(t, 1)    // the stuck connection is through to the server

		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := tn.Random(uint64(100+i), 16<<10+i*97)
				c, err := net.DialTimeout("tcp", addr, tn.Timeout)
				if err != nil {
					errs <- fmt.Errorf("conn %d: dial: %w", i, err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(tn.Timeout))
				got := tn.Exchange(c.(*net.TCPConn), payload)
				if got.Err != nil {
					errs <- fmt.Errorf("conn %d: %w", i, got.Err)
				} else if got.N != int64(len(payload)) || got.Sum != tn.Sum(payload) {
					errs <- fmt.Errorf("conn %d: got %d bytes sha %s, want %d sha %s", i, got.N, got.Sum, len(payload), tn.Sum(payload))
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := srv.Accepted(); n != conns+1 {
			t.Errorf("server accepted %d connections, want %d", n, conns+1)
		}
		// The stuck client was neither dropped nor starved.
		if got := ask(t, stuck, "late but fine"); got != "late but fine" {
			t.Errorf("stuck client at the end: %q", got)
		}
	})
}

// testFilter is a Filter made of optional functions; nil ones pass through.
type testFilter struct {
	host.PassThrough
	opened func(s *host.Stream) error
	data   func(dir host.Direction, chunk []byte, s *host.Stream) error
	end    func(dir host.Direction, s *host.Stream) error
	closed func()
}

func (f *testFilter) Opened(s *host.Stream) error {
	if f.opened != nil {
		return f.opened(s)
	}
	return nil
}

func (f *testFilter) Data(dir host.Direction, chunk []byte, s *host.Stream) error {
	if f.data != nil {
		return f.data(dir, chunk, s)
	}
	return s.Send(dir, chunk)
}

func (f *testFilter) End(dir host.Direction, s *host.Stream) error {
	if f.end != nil {
		return f.end(dir, s)
	}
	return nil
}

func (f *testFilter) Closed() {
	if f.closed != nil {
		f.closed()
	}
}

// hookFunc makes a fresh filter per connection.
type hookFunc func(info *host.ConnInfo) (host.Filter, error)

func (f hookFunc) Open(info *host.ConnInfo) (host.Filter, error) { return f(info) }

func link(name string, f hookFunc) host.Link { return host.Link{Name: name, Hook: f} }

// recordEcho echoes every read and, at EOF, half-closes and reports all the
// bytes it received.
func recordEcho(got chan<- []byte) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		var buf bytes.Buffer
		_, err := io.Copy(c, io.TeeReader(c, &buf))
		if err == nil {
			c.CloseWrite()
		}
		got <- buf.Bytes()
	}
}

// roundTrip writes out, half-closes and reads c to EOF.
func roundTrip(t *testing.T, c *net.TCPConn, out []byte) []byte {
	t.Helper()
	go func() {
		c.Write(out)
		c.CloseWrite()
	}()
	in, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	return in
}

// TestFilterRewritesLength doubles every byte toward the server and halves
// the stream back toward the client: chunk boundaries fall anywhere, so the
// halving filter keeps its parity across chunks.
func TestFilterRewritesLength(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		double := func(dir host.Direction, chunk []byte, s *host.Stream) error {
			out := make([]byte, 0, 2*len(chunk))
			for _, b := range chunk {
				out = append(out, b, b)
			}
			return s.Send(dir, out)
		}
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			odd := false
			return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				if dir == host.ClientToServer {
					return double(dir, chunk, s)
				}
				out := make([]byte, 0, len(chunk)/2+1)
				for _, b := range chunk {
					if !odd {
						out = append(out, b)
					}
					odd = !odd
				}
				return s.Send(dir, out)
			}}, nil
		})
		serverGot := make(chan []byte, 1)
		srv := tn.Serve(t, recordEcho(serverGot))
		addr, _, _ := eng.Tunnel(t, srv.Addr(), host.Link{Name: "resize", Hook: hook})

		payload := tn.Random(7, 300<<10)
		back := roundTrip(t, tn.Dial(t, addr), payload)
		if tn.Sum(back) != tn.Sum(payload) {
			t.Errorf("client got %d bytes back, want the %d sent", len(back), len(payload))
		}
		doubled := make([]byte, 0, 2*len(payload))
		for _, b := range payload {
			doubled = append(doubled, b, b)
		}
		if got := tn.Wait(t, serverGot, "what the server received"); tn.Sum(got) != tn.Sum(doubled) {
			t.Errorf("server got %d bytes, want the %d doubled bytes", len(got), len(doubled))
		}
	})
}

// TestFilterDrops drops the whole client -> server stream: the server sees
// only the end of it.
func TestFilterDrops(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		drop := host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, chunk []byte) ([]byte, error) {
			if dir == host.ClientToServer {
				return nil, nil
			}
			return chunk, nil
		})
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, halfCloseServer([]byte("nothing came\n"), serverGot))
		addr, _, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "drop", Hook: drop})

		back := roundTrip(t, tn.Dial(t, addr), tn.Random(3, 10240))
		if string(back) != "nothing came\n" {
			t.Errorf("client got %q", back)
		}
		if s := tn.Wait(t, serverGot, "what the server received"); s.Err != nil || s.N != 0 {
			t.Errorf("server got %d bytes (err %v), want 0", s.N, s.Err)
		}
		logs.Wait(t, "connection closed", "bytes_from_client=10240 bytes_to_server=0") // dropped: read, never written
	})
}

// TestFilterAnswersClient answers every client chunk itself, upper-cased,
// with Send(ServerToClient) from a client -> server callback; the server
// gets nothing.
func TestFilterAnswersClient(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				if dir == host.ClientToServer {
					return s.Send(host.ServerToClient, bytes.ToUpper(chunk))
				}
				return s.Send(dir, chunk)
			}}, nil
		})
		serverGot := make(chan []byte, 1)
		srv := tn.Serve(t, recordEcho(serverGot))
		addr, _, _ := eng.Tunnel(t, srv.Addr(), host.Link{Name: "answer", Hook: hook})

		c := tn.Dial(t, addr)
		for _, msg := range []string{"ping\n", "again\n"} {
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if want := bytes.ToUpper([]byte(msg)); !bytes.Equal(got, want) {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Errorf("after the half-close: %q, %v; want a clean EOF", rest, err)
		}
		if got := tn.Wait(t, serverGot, "what the server received"); len(got) != 0 {
			t.Errorf("server got %q, want nothing", got)
		}
	})
}

// TestFilterCloses says goodbye and closes the connection when the client
// sends QUIT: the goodbye arrives before the end of the stream, and QUIT
// never reaches the server.
func TestFilterCloses(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				if dir == host.ClientToServer && bytes.Contains(chunk, []byte("QUIT")) {
					s.Close()
					return s.Send(host.ServerToClient, []byte("bye\n"))
				}
				return s.Send(dir, chunk)
			}}, nil
		})
		serverGot := make(chan []byte, 1)
		srv := tn.Serve(t, recordEcho(serverGot))
		addr, _, _ := eng.Tunnel(t, srv.Addr(), host.Link{Name: "quit", Hook: hook})

		c := tn.Dial(t, addr)
		io.WriteString(c, "hello\n")
		got := make([]byte, 6)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello\n" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		io.WriteString(c, "QUIT\n")
		rest, err := io.ReadAll(c)
		if err != nil || string(rest) != "bye\n" {
			t.Fatalf("after QUIT: %q, %v; want \"bye\\n\" then a clean EOF", rest, err)
		}
		if got := tn.Wait(t, serverGot, "what the server received"); string(got) != "hello\n" {
			t.Errorf("server got %q, want only \"hello\\n\"", got)
		}
	})
}

// TestFilterHoldsBytes assembles lines: a partial line is held until its
// newline arrives, and what is left at the end of the stream is flushed by
// End before the half-close.
func TestFilterHoldsBytes(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		held := make(chan int, 16)
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			var line []byte
			return &testFilter{
				data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
					if dir == host.ServerToClient {
						return s.Send(dir, chunk)
					}
					line = append(line, chunk...)
					if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
						if err := s.Send(dir, line[:i+1]); err != nil {
							return err
						}
						line = append(line[:0], line[i+1:]...)
					}
					held <- len(line)
					return nil
				},
				end: func(dir host.Direction, s *host.Stream) error {
					if dir == host.ClientToServer && len(line) > 0 {
						return s.Send(dir, line)
					}
					return nil
				},
			}, nil
		})
		firstRead := make(chan string, 1)
		serverGot := make(chan []byte, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) {
			buf := make([]byte, 1024)
			n, _ := c.Read(buf)
			firstRead <- string(buf[:n])
			rest, _ := io.ReadAll(c)
			serverGot <- append(buf[:n], rest...)
		})
		addr, _, _ := eng.Tunnel(t, srv.Addr(), host.Link{Name: "lines", Hook: hook})

		c := tn.Dial(t, addr)
		io.WriteString(c, "hel")
		if n := <-held; n != 3 {
			t.Fatalf("filter holds %d bytes, want 3", n)
		}
		io.WriteString(c, "lo\n")
		if first := <-firstRead; first != "hello\n" {
			t.Fatalf("server's first read got %q, want the whole line \"hello\\n\"", first)
		}
		io.WriteString(c, "tail")
		c.CloseWrite()
		if got := tn.Wait(t, serverGot, "what the server received"); string(got) != "hello\ntail" {
			t.Errorf("server got %q, want \"hello\\ntail\"", got)
		}
	})
}

// TestChainOrder records every callback of a four-link chain: client ->
// server runs first to last, server -> client last to first, and links
// attached to one direction are skipped on the other.
func TestChainOrder(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		var mu sync.Mutex
		var calls []string
		record := func(s string) {
			mu.Lock()
			calls = append(calls, s)
			mu.Unlock()
		}
		arrow := map[host.Direction]string{host.ClientToServer: ">", host.ServerToClient: "<"}
		closedAll := make(chan struct{}, 4)
		mk := func(name string, d host.Directions) host.Link {
			return host.Link{Name: name, Directions: d, Hook: hookFunc(func(*host.ConnInfo) (host.Filter, error) {
				return &testFilter{
					opened: func(*host.Stream) error { record(name + " opened"); return nil },
					data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
						record(name + " data" + arrow[dir] + string(chunk))
						return s.Send(dir, chunk)
					},
					end:    func(dir host.Direction, _ *host.Stream) error { record(name + " end" + arrow[dir]); return nil },
					closed: func() { record(name + " closed"); closedAll <- struct{}{} },
				}, nil
			})}
		}
		srv := tn.Serve(t, tn.Echo)
		addr, _, _ := eng.Tunnel(t, srv.Addr(),
			mk("A", host.Both), mk("B", host.OnlyClientToServer), mk("C", host.Both), mk("D", host.OnlyServerToClient))

		if back := roundTrip(t, tn.Dial(t, addr), []byte("x")); string(back) != "x" {
			t.Fatalf("echo: %q", back)
		}
		for range 4 {
			<-closedAll
		}
		want := []string{
			"A opened", "B opened", "C opened", "D opened",
			"A data>x", "B data>x", "C data>x",
			"A end>", "B end>", "C end>",
			"D data<x", "C data<x", "A data<x",
			"D end<", "C end<", "A end<",
			"A closed", "B closed", "C closed", "D closed",
		}
		mu.Lock()
		defer mu.Unlock()
		// The client's half-close may be read before or after the echo comes
		// back; each direction's own order is what the chain guarantees.
		got := map[string][]string{}
		for _, c := range calls {
			got[stream(c)] = append(got[stream(c)], c)
		}
		exp := map[string][]string{}
		for _, c := range want {
			exp[stream(c)] = append(exp[stream(c)], c)
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("callbacks:\n got %q\nwant %q", calls, want)
		}
		if calls[0] != "A opened" || calls[len(calls)-1] != "D closed" {
			t.Errorf("callbacks must start with the Opened calls and end with the Closed calls: %q", calls)
		}
	})
}

// stream classifies a recorded callback by the stream it belongs to.
func stream(call string) string {
	switch {
	case bytes.ContainsAny([]byte(call), "><"):
		if bytes.ContainsRune([]byte(call), '>') {
			return "c->s"
		}
		return "s->c"
	}
	return "lifecycle"
}

// TestOpenedSends sends a banner to the client and a greeting to the server
// from Opened, before either peer has said anything: each arrives first.
func TestOpenedSends(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{opened: func(s *host.Stream) error {
				if err := s.Send(host.ServerToClient, []byte("banner from the tunnel\n")); err != nil {
					return err
				}
				return s.Send(host.ClientToServer, []byte("HELLO\n"))
			}}, nil
		})
		srv := tn.Serve(t, tn.SpeakFirst)
		addr, _, _ := eng.Tunnel(t, srv.Addr(), host.Link{Name: "banner", Hook: hook})

		back := roundTrip(t, tn.Dial(t, addr), []byte("abc"))
		// The banner precedes the server's welcome; the server echoes the
		// greeting before the client's own bytes.
		if want := "banner from the tunnel\n" + tn.Welcome + "HELLO\nabc"; string(back) != want {
			t.Errorf("client got %q, want %q", back, want)
		}
	})
}

// TestFilterError aborts the connection when a filter fails, logs the
// error with the link's name, and keeps serving other connections.
func TestFilterError(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				if bytes.Contains(chunk, []byte("bad")) {
					return fmt.Errorf("forbidden word in %d bytes", len(chunk))
				}
				return s.Send(dir, chunk)
			}}, nil
		})
		srv := tn.Serve(t, tn.Echo)
		addr, _, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "censor", Hook: hook})

		c := tn.Dial(t, addr)
		io.WriteString(c, "good\n")
		got := make([]byte, 5)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "good\n" {
			t.Fatalf("echo: %q, %v", got, err)
		}
		io.WriteString(c, "bad\n")
		rest, err := io.ReadAll(c)
		if len(rest) != 0 || (err != nil && !tn.IsClosed(err)) {
			t.Fatalf("after the failing chunk: %q, %v; want the connection closed", rest, err)
		}
		logs.Wait(t, "connection closed", "censor", "forbidden word in 4 bytes")

		if back := roundTrip(t, tn.Dial(t, addr), []byte("fine")); string(back) != "fine" {
			t.Errorf("next connection: %q", back)
		}
	})
}

// TestHookRefuses refuses connections in Open: the client is closed and
// the target is never dialled.
func TestHookRefuses(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(info *host.ConnInfo) (host.Filter, error) {
			return nil, fmt.Errorf("client %s is not welcome", info.Client)
		})
		srv := tn.Serve(t, tn.Echo)
		addr, _, logs := eng.Tunnel(t, srv.Addr(), host.Link{Name: "gate", Hook: hook})

		expectRefused(t, addr)
		logs.Wait(t, "connection closed", "refused by filter", "gate", "is not welcome")
		if n := srv.Accepted(); n != 0 {
			t.Errorf("target accepted %d connections, want 0", n)
		}
	})
}

// TestSendTowardSplicedDirection: a link attached to client -> server only
// cannot write toward the client, whose stream is spliced by the kernel.
func TestSendTowardSplicedDirection(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		sendErr := make(chan error, 1)
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				select {
				case sendErr <- s.Send(host.ServerToClient, []byte("nope")):
				default:
				}
				return s.Send(dir, chunk)
			}}, nil
		})
		srv := tn.Serve(t, tn.Echo)
		addr, _, _ := eng.Tunnel(t, srv.Addr(), host.Link{Name: "oneway", Hook: hook, Directions: host.OnlyClientToServer})
		if back := roundTrip(t, tn.Dial(t, addr), []byte("data")); string(back) != "data" {
			t.Errorf("echo: %q", back)
		}
		if err := <-sendErr; !errors.Is(err, host.ErrNotAttached) {
			t.Errorf("Send toward the spliced direction: %v, want ErrNotAttached", err)
		}
	})
}

// TestAnswerAtEnd counts what the client sends and, when the client
// half-closes, answers with the count itself and closes: the server never
// sees a byte, and the answer arrives whole before the end of stream.
func TestAnswerAtEnd(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			n := 0
			return &testFilter{
				data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
					if dir == host.ClientToServer {
						n += len(chunk)
						return nil
					}
					return s.Send(dir, chunk)
				},
				end: func(dir host.Direction, s *host.Stream) error {
					if dir == host.ClientToServer {
						s.Close()
						return s.Send(host.ServerToClient, fmt.Appendf(nil, "you sent %d bytes\n", n))
					}
					return nil
				},
			}, nil
		})
		serverGot := make(chan []byte, 1)
		srv := tn.Serve(t, recordEcho(serverGot))
		addr, _ := eng.tunnel(t, tn.Route("test", srv.Addr(), host.Link{Name: "counter", Hook: hook}))
		back := roundTrip(t, tn.Dial(t, addr), tn.Random(5, 1<<20))
		if string(back) != "you sent 1048576 bytes\n" {
			t.Errorf("client got %q", back)
		}
		if got := tn.Wait(t, serverGot, "what the server received"); len(got) != 0 {
			t.Errorf("server got %d bytes, want none", len(got))
		}
	})
}

// TestSendLoop: two filters that bounce every chunk back at each other
// forever are stopped at the send depth limit; the connection is closed
// with ErrSendDepth in the log, and the process goes on.
func TestSendLoop(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		bounce := func(to host.Direction) hookFunc {
			return func(*host.ConnInfo) (host.Filter, error) {
				return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
					return s.Send(to, chunk)
				}}, nil
			}
		}
		srv := tn.Serve(t, tn.Echo)
		// A sends everything toward the server, B everything back toward the
		// client, which is A again.
		addr, logs := eng.tunnel(t, tn.Route("test", srv.Addr(),
			link("A", bounce(host.ClientToServer)), link("B", bounce(host.ServerToClient))))
		c := tn.Dial(t, addr)
		io.WriteString(c, "ping")
		expectClosed(t, c)
		line := logs.Wait(t, "connection closed", host.ErrSendDepth.Error())
		// Named by the link that hit the bound, not by each of the 64
		// levels above it (a 3 KB error once).
		if n := strings.Count(line, " -> "); n > 1 {
			t.Errorf("the error names %d links' directions, want one:\n%s", n, line)
		}
	})
}

// countingHook counts the filters it made and how many of them were closed,
// and fails in Opened or Data on demand.
type countingHook struct {
	opened, closed atomic.Int64
	failOpened     bool
	failData       bool
}

func (h *countingHook) Open(*host.ConnInfo) (host.Filter, error) {
	h.opened.Add(1)
	var once sync.Once
	return &testFilter{
		opened: func(*host.Stream) error {
			if h.failOpened {
				return errors.New("opened fails")
			}
			return nil
		},
		data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
			if h.failData {
				return errors.New("data fails")
			}
			return s.Send(dir, chunk)
		},
		closed: func() {
			first := false
			once.Do(func() { first = true })
			if !first {
				panic("Closed called twice")
			}
			h.closed.Add(1)
		},
	}, nil
}

// TestFilterClosedOnce: every filter a hook makes gets exactly one Closed,
// however its connection ends: normally, by a client reset, a refused
// dial, a failing Opened (of this link or the next), a failing Data.
func TestFilterClosedOnce(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		down := testkit.Refusing(t)
		for _, tc := range []struct {
			name   string
			target string
			hook   *countingHook
			next   *countingHook // a second link after the counted one
			client func(c *net.TCPConn)
		}{
			{name: "normal", target: srv.Addr(), hook: &countingHook{}, client: func(c *net.TCPConn) { roundTrip(t, c, []byte("hi")) }},
			{name: "client reset", target: srv.Addr(), hook: &countingHook{}, client: func(c *net.TCPConn) {
				ask(t, c, "hi")
				c.SetLinger(0)
				c.Close()
			}},
			{name: "target refuses", target: down, hook: &countingHook{}, client: func(c *net.TCPConn) { io.ReadAll(c) }},
			{name: "Opened fails", target: srv.Addr(), hook: &countingHook{failOpened: true}, client: func(c *net.TCPConn) { io.ReadAll(c) }},
			{name: "next link's Opened fails", target: srv.Addr(), hook: &countingHook{}, next: &countingHook{failOpened: true}, client: func(c *net.TCPConn) { io.ReadAll(c) }},
			{name: "Data fails", target: srv.Addr(), hook: &countingHook{failData: true}, client: func(c *net.TCPConn) {
				c.Write([]byte("hi"))
				io.ReadAll(c)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				chain := []host.Link{{Name: "counted", Hook: tc.hook}}
				if tc.next != nil {
					chain = append(chain, host.Link{Name: "next", Hook: tc.next})
				}
				p, logs := tn.Proxy(t, tn.Route("test", tc.target, eng.links(chain)...))
				addr := p.Addr("test").String()
				const conns = 5
				for range conns {
					if c, err := net.DialTimeout("tcp", addr, tn.Timeout); err == nil {
						c.SetDeadline(time.Now().Add(tn.Timeout))
						tc.client(c.(*net.TCPConn))
						c.Close()
					}
				}
				for i := 1; i <= conns; i++ {
					logs.Wait(t, "connection closed", fmt.Sprintf("conn=%d ", i))
				}
				if o, c := tc.hook.opened.Load(), tc.hook.closed.Load(); o != conns || c != conns {
					t.Errorf("%d filters made, %d closed; want %d and %d", o, c, conns, conns)
				}
				if tc.next != nil {
					if o, c := tc.next.opened.Load(), tc.next.closed.Load(); o != c {
						t.Errorf("next link: %d filters made, %d closed", o, c)
					}
				}
			})
		}
	})
}

// TestCloseWhilePeerKeepsSending: after a filter's Close, a client that
// never stops sending still gets the goodbye and then the end of the
// stream, and the tunnel lets go of the connection within its lingering
// time instead of draining forever.
func TestCloseWhilePeerKeepsSending(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
				if dir == host.ClientToServer && bytes.Contains(chunk, []byte("QUIT")) {
					s.Close()
					return s.Send(host.ServerToClient, []byte("bye\n"))
				}
				return s.Send(dir, chunk)
			}}, nil
		})
		srv := tn.Serve(t, tn.Echo)
		addr, logs := eng.tunnel(t, tn.Route("test", srv.Addr(), host.Link{Name: "quit", Hook: hook}))
		c := tn.Dial(t, addr)
		io.WriteString(c, "QUIT\n")
		stop := make(chan struct{})
		sent := make(chan error, 1)
		go func() { // a client that does not listen
			// 16 KiB a millisecond: it never stops, which is all the
			// tunnel's draining sees (flat out, the writes took 1.5 s of
			// CPU per engine for the lingering time).
			junk := make([]byte, 16<<10)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					sent <- nil
					return
				case <-tick.C:
				}
				if _, err := c.Write(junk); err != nil {
					sent <- err
					return
				}
			}
		}()
		start := time.Now()
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "bye\n" {
			t.Fatalf("client got %q, %v; want the goodbye", got, err)
		}
		logs.Wait(t, "connection closed")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("connection closed %v after the filter's Close; want it bounded by the lingering time", d)
		}
		close(stop)
		<-sent
	})
}

// TestTargetAddr: Stream.TargetAddr is zero in Opened (before the dial)
// and the target's address once connected, a host name resolved, an
// IPv4-mapped address unmapped, on both engines (the inline one takes IP
// targets only).
func TestTargetAddr(t *testing.T) {
	engines(t, func(t *testing.T, eng engine) {
		srv := tn.Serve(t, tn.Echo)
		want := netip.MustParseAddrPort(srv.Addr())
		port := strconv.Itoa(int(want.Port()))
		target := net.JoinHostPort("localhost", port)
		if eng.inline {
			target = net.JoinHostPort("::ffff:127.0.0.1", port)
		}
		got := make(chan [2]netip.AddrPort, 1)
		var atOpen netip.AddrPort
		hook := hookFunc(func(*host.ConnInfo) (host.Filter, error) {
			return &testFilter{
				opened: func(s *host.Stream) error { atOpen = s.TargetAddr(); return nil },
				data: func(dir host.Direction, chunk []byte, s *host.Stream) error {
					select {
					case got <- [2]netip.AddrPort{atOpen, s.TargetAddr()}:
					default:
					}
					return s.Send(dir, chunk)
				},
			}, nil
		})
		addr, _ := eng.tunnel(t, tn.Route("r", target, host.Link{Name: "f", Hook: hook}))
		c := tn.Dial(t, addr)
		io.WriteString(c, "x")
		if g := <-got; g[0].IsValid() || g[1] != want {
			t.Errorf("TargetAddr in Opened %v, in Data %v; want none, then %v", g[0], g[1], want)
		}
	})
}
