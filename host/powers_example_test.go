package host_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/tunnelwasm/tunnel/host"
)

// delayHook delays every chunk toward the client by a fixed latency: each
// chunk is held and sent when the filter's timer fires (toxiproxy's
// "latency" toxic).
type delayHook struct{ latency time.Duration }

func (h delayHook) Open(*host.ConnInfo) (host.Filter, error) { return &delayFilter{h: h}, nil }

type delayFilter struct {
	host.PassThrough
	h    delayHook
	held []byte
}

func (f *delayFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir != host.ServerToClient {
		return s.Send(dir, b)
	}
	f.held = append(f.held, b...) // b is only valid during the call
	return s.SetTimer(f.h.latency)
}

// Timer implements host.TimerFilter: the held bytes go on.
func (f *delayFilter) Timer(s *host.Stream) error {
	err := s.Send(host.ServerToClient, f.held)
	f.held = f.held[:0]
	return err
}

// A filter with a timer: the server's replies reach the client 50 ms late.
func ExampleTimerFilter() {
	echo := serveOnce(func(c net.Conn) { io.Copy(c, c) })
	defer echo.Close()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err := p.Apply([]host.Route{{
		Name:   "slow",
		Listen: "127.0.0.1:0",
		Target: echo.Addr().String(),
		Chain:  []host.Link{{Name: "latency", Hook: delayHook{latency: 50 * time.Millisecond}}},
	}})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr("slow").String())
	defer c.Close()
	start := time.Now()
	c.Write([]byte("ping"))
	reply := make([]byte, 4)
	io.ReadFull(c, reply)
	fmt.Printf("%s after at least 50ms: %v\n", reply, time.Since(start) >= 50*time.Millisecond)
	// Output: ping after at least 50ms: true
}

// prefixRouter chooses the target by the client's first byte: '1' or '2'
// (a protocol router would look at a TLS ClientHello, an HTTP Host header,
// an SSH banner). The byte itself is not forwarded.
type prefixRouter struct{ targets map[byte]string }

func (r prefixRouter) Open(*host.ConnInfo) (host.Filter, error) { return &prefixFilter{r: r}, nil }

type prefixFilter struct {
	host.PassThrough
	r      prefixRouter
	routed bool
}

func (f *prefixFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ClientToServer && !f.routed {
		f.routed = true
		target, ok := f.r.targets[b[0]]
		if !ok {
			s.Send(host.ServerToClient, []byte("unknown service\n"))
			s.Close()
			return nil
		}
		if err := s.SetTarget(target); err != nil {
			return err
		}
		b = b[1:]
	}
	return s.Send(dir, b)
}

// A route whose chain chooses the target (Route.LateDial): the dial waits
// for the filter's SetTarget, and the client's bytes wait with it.
func ExampleStream_SetTarget() {
	one := serveOnce(func(c net.Conn) { c.Write([]byte("one:")); io.Copy(c, c) })
	defer one.Close()
	two := serveOnce(func(c net.Conn) { c.Write([]byte("two:")); io.Copy(c, c) })
	defer two.Close()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err := p.Apply([]host.Route{{
		Name:     "mux",
		Listen:   "127.0.0.1:0",
		LateDial: true,
		Chain: []host.Link{{Name: "router", Hook: prefixRouter{targets: map[byte]string{
			'1': one.Addr().String(),
			'2': two.Addr().String(),
		}}, Directions: host.OnlyClientToServer}},
	}})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr("mux").String())
	c.Write([]byte("2hello"))
	c.(*net.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("%s\n", bytes.TrimSpace(reply))
	// Output: two:hello
}

// serveOnce serves one connection on a loopback port with handle.
func serveOnce(handle func(net.Conn)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}()
	return ln
}

// upperHook upper-cases what the client sends. Its filters only compute
// and call their Stream, so it says it never blocks (InlineHook).
type upperHook struct{}

func (upperHook) Open(*host.ConnInfo) (host.Filter, error) { return upperFilter{}, nil }

type upperFilter struct{ host.PassThrough }

func (upperFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ClientToServer {
		return s.Send(dir, bytes.ToUpper(b))
	}
	return s.Forward(dir, b)
}

// Inline implements host.InlineHook.
func (upperHook) Inline() bool { return true }

// An inline hook: the route's connections run on an event loop of the
// route's own, which calls the filters itself, with no goroutine per
// connection.
func ExampleInlineHook() {
	echo := serveOnce(func(c net.Conn) { io.Copy(c, c) })
	defer echo.Close()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err := p.Apply([]host.Route{{
		Name:   "upper",
		Listen: "127.0.0.1:0",
		Target: echo.Addr().String(), // an IP address: the loop never resolves names
		Chain:  []host.Link{{Name: "upper", Hook: upperHook{}}},
	}})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr("upper").String())
	defer c.Close()
	c.Write([]byte("hello"))
	reply := make([]byte, 5)
	io.ReadFull(c, reply)
	fmt.Printf("%s\n", reply)
	// Output: HELLO
}

// paceHook lets the client send at most one chunk per tick: each chunk is
// held, its sender's reads are paused meanwhile (so TCP slows the client
// down instead of the filter buffering what it keeps writing), and the
// timer sends it and resumes them.
type paceHook struct{ tick time.Duration }

func (h paceHook) Open(*host.ConnInfo) (host.Filter, error) { return &paceFilter{h: h}, nil }

type paceFilter struct {
	host.PassThrough
	h    paceHook
	held []byte
}

func (f *paceFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if dir != host.ClientToServer {
		return s.Forward(dir, b)
	}
	f.held = append(f.held, b...)
	if err := s.PauseRead(host.ClientToServer); err != nil {
		return err
	}
	return s.SetTimer(f.h.tick)
}

// Timer implements host.TimerFilter: the held chunk goes on, and the
// client is read again.
func (f *paceFilter) Timer(s *host.Stream) error {
	err := s.Send(host.ClientToServer, f.held)
	f.held = f.held[:0]
	if err != nil {
		return err
	}
	return s.ResumeRead(host.ClientToServer)
}

// A filter that paces its sender: it pauses the client's reads while it
// holds a chunk, so the client's 1 MiB upload is slowed to one chunk per
// 10 ms, and the filter never holds more than one chunk.
func ExampleStream_PauseRead() {
	sink := serveOnce(func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d", n)
	})
	defer sink.Close()
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err := p.Apply([]host.Route{{
		Name:   "paced",
		Listen: "127.0.0.1:0",
		Target: sink.Addr().String(),
		Chain:  []host.Link{{Name: "pace", Hook: paceHook{tick: 10 * time.Millisecond}}},
	}})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr("paced").String())
	defer c.Close()
	c.Write(bytes.Repeat([]byte("x"), 1<<20))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	fmt.Printf("the server got %s bytes\n", got)
	// Output: the server got 1048576 bytes
}
