package host

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testcert"
)

// TestReviewCloseWhilePumpsParkAndWake closes a proxy while its pumps park
// and wake as fast as pokes and echoes make them: Close returns promptly,
// every connection finishes, and no pump goroutine is left.
func TestReviewCloseWhilePumpsParkAndWake(t *testing.T) {
	id := ChunkFunc(func(_ *ConnInfo, _ Direction, b []byte) ([]byte, error) { return b, nil })
	p := startProxy(t, nil, Route{Name: "s", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "id", Hook: id}}})
	const conns = 16
	var wg sync.WaitGroup
	for range conns {
		c := dialRoute(t, p, "s")
		askEcho(t, c, "hi")
		wg.Add(1)
		go func() { // echo until the proxy closes the connection
			defer wg.Done()
			b := make([]byte, 3)
			for {
				if _, err := c.Write([]byte("abc")); err != nil {
					return
				}
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
			}
		}()
	}
	stopStorm := pokeStorm(p, 50*time.Microsecond)
	// Let pumps park and wake a while (seen parked at 20 samples), then
	// close while they still do.
	for seen, deadline := 0, time.Now().Add(30*time.Second); seen < 20; {
		if parkedPumps(p) > 0 {
			seen++
		}
		if time.Now().After(deadline) {
			t.Fatalf("pumps seen parked at %d samples in 30s of pokes, want 20", seen)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s while pumps parked and woke")
	}
	stopStorm()
	t.Logf("Close took %v", time.Since(start))
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	select {
	case <-clientsDone:
	case <-time.After(10 * time.Second):
		t.Fatal("clients still connected 10s after Close")
	}
	if n := len(openConns(p)); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
	p.mu.Lock()
	awake, pk := len(p.awake), p.parker
	p.mu.Unlock()
	if awake != 0 || pk != nil {
		t.Fatalf("after Close: %d connections in Proxy.awake, parker %v; want none", awake, pk)
	}
	for deadline := time.Now().Add(10 * time.Second); pumpGoroutines(false) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d pump goroutines left 10s after Close", pumpGoroutines(false))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReviewTLSRoutesParkTheirPlainSide: on a route that terminates TLS and
// on one that originates it, the direction whose source is the plaintext
// socket parks and the TLS one never does (a session may hold bytes its
// socket no longer shows); bursts of every size wake the parked side and
// come back whole, and a Close ends the connection at once.
func TestReviewTLSRoutesParkTheirPlainSide(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "review CA")
	id := ChunkFunc(func(_ *ConnInfo, _ Direction, b []byte) ([]byte, error) { return b, nil })
	for _, tc := range []struct {
		name  string
		plain Direction // the direction whose source is plaintext
	}{{"terminating", ServerToClient}, {"originating", ClientToServer}} {
		t.Run(tc.name, func(t *testing.T) {
			r := Route{Name: "t", Listen: "127.0.0.1:0", Chain: []Link{{Name: "id", Hook: id}}}
			if tc.plain == ServerToClient {
				r.Target = echoServer(t)
				r.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS}}
			} else {
				ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS}})
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
						go func() { echo(c); c.Close() }()
					}
				}()
				r.Target = ln.Addr().String()
				r.UpstreamTLS = &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
			}
			p := startProxy(t, nil, r)
			swept := watchSweeps(p)
			var c net.Conn = dialRoute(t, p, "t")
			if r.TLS != nil {
				tlc := tls.Client(c, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
				if err := tlc.Handshake(); err != nil {
					t.Fatal(err)
				}
				c = tlc
			}
			parked := func(d Direction) int {
				n := 0
				for _, oc := range openConns(p) {
					oc.dlMu.Lock()
					if oc.parkedOn[d] != nil {
						n++
					}
					oc.dlMu.Unlock()
				}
				return n
			}
			for i, size := range []int{1, 1000, 70 << 10, 300 << 10} {
				askEchoConcurrently(t, c, bytes.Repeat([]byte{byte('a' + i)}, size))
				waitSwept(t, swept, "parked on the plaintext side", func() int { return parked(tc.plain) }, 1)
				if n := parked(tc.plain ^ 1); n != 0 {
					t.Fatalf("the direction reading a TLS session parked")
				}
			}
			start := time.Now()
			p.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
				t.Fatalf("client of a closed proxy: read %v, want the connection closed", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Close took %v with a parked TLS route", d)
			}
		})
	}
}

// askEchoConcurrently writes msg while reading it back (a burst larger
// than the socket buffers would deadlock written first).
func askEchoConcurrently(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	werr := make(chan error, 1)
	go func() { _, err := c.Write(msg); werr <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes: %v, equal %v", len(msg), err, bytes.Equal(got, msg))
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// lateTo chooses target with the client's first chunk, which it passes on.
type lateTo struct {
	PassThrough
	target string
	chosen bool
}

func (h *lateTo) Open(*ConnInfo) (Filter, error) { return &lateTo{target: h.target}, nil }

func (h *lateTo) Data(dir Direction, chunk []byte, s *Stream) error {
	if dir == ClientToServer && !h.chosen {
		h.chosen = true
		if err := s.SetTarget(h.target); err != nil {
			return err
		}
	}
	return s.Send(dir, chunk)
}

// TestReviewLateDialParks: after a late dial the goroutine that read the
// client until the target was chosen pumps on; both directions park when
// idle, wake for bursts (the first bytes, held for the dial, come back
// first), and a Close ends the connection at once.
func TestReviewLateDialParks(t *testing.T) {
	// Not parallel: it counts the process's pump goroutines.
	p := startProxy(t, nil, Route{Name: "l", Listen: "127.0.0.1:0", LateDial: true, Chain: []Link{{Name: "late", Hook: &lateTo{target: echoServer(t)}}}})
	swept := watchSweeps(p)
	c := dialRoute(t, p, "l")
	askEcho(t, c, "first bytes")
	for i, size := range []int{1, 70 << 10, 200 << 10} {
		waitSwept(t, swept, "parked", func() int { return parkedPumps(p) }, 2)
		askEchoConcurrently(t, c, bytes.Repeat([]byte{byte('a' + i)}, size))
	}
	waitSwept(t, swept, "parked", func() int { return parkedPumps(p) }, 2)
	if n := pumpGoroutines(false); n != 0 {
		t.Errorf("%d goroutines wait in a filtered pump with both pumps parked", n)
	}
	p.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("client of a closed proxy: read %v, want the connection closed", err)
	}
	if n := len(openConns(p)); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
}

// TestReviewFilterCloseWhilePumpsParkAndWake: a filter's graceful close
// races pumps that park and wake under a storm of pokes: every client gets
// the answer whole, then a clean end of stream, and no connection is left.
func TestReviewFilterCloseWhilePumpsParkAndWake(t *testing.T) {
	t.Parallel()
	p := startProxy(t, nil, Route{Name: "q", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "quit", Hook: quitFilter{}}}})
	stopStorm := pokeStorm(p, 20*time.Microsecond)
	defer stopStorm()
	const conns = 24
	var wg sync.WaitGroup
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.Addr("q").String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			b := make([]byte, 4)
			for range k % 8 { // a few echoes, so pumps park and wake in between
				if _, err := io.WriteString(c, "ping"); err != nil {
					t.Error(err)
					return
				}
				if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
					t.Errorf("echo: %q, %v", b, err)
					return
				}
			}
			if _, err := io.WriteString(c, "quit"); err != nil {
				t.Error(err)
				return
			}
			if rest, err := io.ReadAll(c); err != nil || string(rest) != "bye" {
				t.Errorf("after quit: %q, %v; want \"bye\" and a clean end of stream", rest, err)
			}
		}()
	}
	wg.Wait()
	// Each connection lingers until its client closes, then finishes.
	waitFinished(t, p, 30*time.Second, "after their clients closed")
}

// holdEnd defers the client's half-close forever.
type holdEnd struct{ PassThrough }

func (holdEnd) Open(*ConnInfo) (Filter, error) { return holdEnd{}, nil }

func (holdEnd) End(dir Direction, s *Stream) error {
	if dir == ClientToServer {
		return s.DeferEnd(dir)
	}
	return nil
}

// TestReviewDeferredEndResetWithOtherSideParked: the client half-closes
// while a filter holds its half-close, the silent server's direction parks,
// then the client resets: the connection ends (the parked pump is resumed
// by the teardown) and the server's side is closed.
func TestReviewDeferredEndResetWithOtherSideParked(t *testing.T) {
	t.Parallel()
	serverGone := make(chan struct{})
	target := serve(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // until the tunnel closes it
		close(serverGone)
	})
	p := startProxy(t, nil, Route{Name: "d", Listen: "127.0.0.1:0", Target: target, Chain: []Link{{Name: "hold", Hook: holdEnd{}}}})
	swept := watchSweeps(p)
	c := dialRoute(t, p, "d")
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	waitSwept(t, swept, "parked (server -> client)", func() int {
		for _, oc := range openConns(p) {
			oc.dlMu.Lock() // not with the chain's lock: the engine takes it first
			parked := oc.parkedOn[ServerToClient] != nil
			oc.dlMu.Unlock()
			if parked && oc.ch.endDeferred(ClientToServer) != nil {
				return 1
			}
		}
		return 0
	}, 1)
	c.SetLinger(0)
	c.Close() // a reset
	select {
	case <-serverGone:
	case <-time.After(30 * time.Second):
		t.Fatal("the server's side stayed open 30s after the client reset")
	}
	waitFinished(t, p, 30*time.Second, "after the client reset")
}

// --- Each of these failed on the first parking and lending code. ---

// sendTwice forwards each client chunk, then upper-cases the chunk in place
// (it is the filter's during the call) and forwards it again. Send promises
// that "b is copied or consumed before Send returns" (unlike Forward), so
// the destination must get the original bytes followed by the upper-cased
// ones.
type sendTwice struct{ PassThrough }

func (sendTwice) Open(*ConnInfo) (Filter, error) { return sendTwice{}, nil }

func (sendTwice) Data(dir Direction, chunk []byte, s *Stream) error {
	if dir == ServerToClient {
		return s.Send(dir, chunk)
	}
	if err := s.Send(dir, chunk); err != nil {
		return err
	}
	copy(chunk, bytes.ToUpper(chunk))
	return s.Send(dir, chunk)
}

// TestReviewSendThenMutateChunk: a chunk passed to Send and changed by the
// filter afterwards reaches the destination as it was when sent.
func TestReviewSendThenMutateChunk(t *testing.T) {
	t.Parallel()
	p := startProxy(t, nil, Route{Name: "m", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "twice", Hook: sendTwice{}}}})
	c := dialRoute(t, p, "m")
	if _, err := io.WriteString(c, "abc"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "abcABC" {
		t.Fatalf("echo through a filter that sends the chunk, then changes it and sends it again: %q, want %q", got, "abcABC")
	}
}

// gateFirst holds its first client -> server chunk until release is closed.
type gateFirst struct {
	PassThrough
	entered chan struct{}
	release chan struct{}
	once    *sync.Once
}

func (g gateFirst) Open(*ConnInfo) (Filter, error) { return g, nil }

func (g gateFirst) Data(dir Direction, chunk []byte, s *Stream) error {
	if dir == ClientToServer {
		g.once.Do(func() { close(g.entered); <-g.release })
	}
	return s.Send(dir, chunk)
}

// TestReviewParkedPumpHoldsNoBuffer: a pump poked while it was busy with a
// chunk (a slow filter or a slow destination) parks once it is done; the
// parked direction must not keep its 64 KiB read buffer, as an idle one
// holds none.
func TestReviewParkedPumpHoldsNoBuffer(t *testing.T) {
	t.Parallel()
	g := gateFirst{entered: make(chan struct{}), release: make(chan struct{}), once: new(sync.Once)}
	p := startProxy(t, nil, Route{Name: "g", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "gate", Hook: g}}})
	swept := watchSweeps(p)
	c := dialRoute(t, p, "g")
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	cs := openConns(p)
	if len(cs) != 1 {
		t.Fatalf("%d connections, want 1", len(cs))
	}
	tc := cs[0]
	// A sweep finds the direction idle while its filter runs and pokes it.
	waitSwept(t, swept, "poked", func() int {
		tc.dlMu.Lock()
		defer tc.dlMu.Unlock()
		if tc.poked[ClientToServer] {
			return 1
		}
		return 0
	}, 1)
	close(g.release)
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	waitSwept(t, swept, "parked", func() int {
		tc.dlMu.Lock()
		defer tc.dlMu.Unlock()
		if tc.parkedOn[ClientToServer] != nil {
			return 1
		}
		return 0
	}, 1)
	tc.dlMu.Lock() // the pump wrote rd before it parked, under dlMu
	held := tc.rd[ClientToServer].buf != nil
	tc.dlMu.Unlock()
	if held {
		t.Fatalf("the parked client -> server pump holds its %d KiB read buffer", chunkSize>>10)
	}
}

// TestReviewHalfClosedParkedLeavesSweeps: a connection whose client
// half-closed (its client -> server pump ended) and whose other pump parked
// has no pump awake: sweeps should not keep looking at it (Proxy.awake).
func TestReviewHalfClosedParkedLeavesSweeps(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	target := serve(t, func(c net.Conn) {
		io.WriteString(c, "hello")
		io.Copy(io.Discard, c) // until the half-close the tunnel passes on
		<-done                 // then stay silent, and open
	})
	id := ChunkFunc(func(_ *ConnInfo, _ Direction, b []byte) ([]byte, error) { return b, nil })
	p := startProxy(t, nil, Route{Name: "h", Listen: "127.0.0.1:0", Target: target, Chain: []Link{{Name: "id", Hook: id}}})
	swept := watchSweeps(p)
	c := dialRoute(t, p, "h")
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	waitSwept(t, swept, "parked, the other ended", func() int {
		cs := openConns(p)
		if len(cs) != 1 {
			return 0
		}
		tc := cs[0]
		tc.dlMu.Lock()
		defer tc.dlMu.Unlock()
		if tc.parkedOn[ServerToClient] != nil && tc.pumps.Load() == 1 {
			return 1
		}
		return 0
	}, 1)
	<-swept
	<-swept
	p.mu.Lock()
	awake := len(p.awake)
	p.mu.Unlock()
	if awake != 0 {
		t.Errorf("a connection with one pump ended and the other parked is still swept (%d in Proxy.awake)", awake)
	}
}
