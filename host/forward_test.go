package host_test

// Byte-exactness of the forwarding paths over real loopback sockets: the
// kernel splice path (no hook) and the filtered path (a pass-through hook)
// must deliver the same bytes, honour half-closes, never deadlock when the
// server speaks first, and keep 200 connections independent.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// identity is the filtered path with nothing changed: every chunk is read
// into user space, handed to a hook and written out again.
var identity = host.ChunkFunc(func(_ *host.ConnInfo, _ host.Direction, chunk []byte) ([]byte, error) {
	return chunk, nil
})

// paths runs f once per forwarding path.
func paths(t *testing.T, f func(t *testing.T, chain []host.Link)) {
	t.Run("splice", func(t *testing.T) { t.Parallel(); f(t, nil) })
	t.Run("filtered", func(t *testing.T) {
		t.Parallel()
		f(t, []host.Link{{Name: "identity", Hook: identity}})
	})
}

func TestServerSpeaksFirst(t *testing.T) {
	t.Parallel()
	paths(t, func(t *testing.T, chain []host.Link) {
		srv := tn.Serve(t, tn.SpeakFirst)
		addr, _, _ := tn.Tunnel(t, srv.Addr(), chain...)
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
	paths(t, func(t *testing.T, chain []host.Link) {
		up := bytes.Repeat([]byte("Hello from the client! "), 1000)   // 23,000 bytes
		down := bytes.Repeat([]byte("Hello from the server! "), 2000) // 46,000 bytes
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, halfCloseServer(down, serverGot))
		addr, _, logs := tn.Tunnel(t, srv.Addr(), chain...)

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
		s := <-serverGot
		if s.Err != nil || s.N != int64(len(up)) || s.Sum != tn.Sum(up) {
			t.Fatalf("server got %d bytes (sha %s, err %v), want %d (sha %s)", s.N, s.Sum, s.Err, len(up), tn.Sum(up))
		}
		if got.N != int64(len(down)) || got.Sum != tn.Sum(down) {
			t.Fatalf("client got %d bytes (sha %s), want %d (sha %s)", got.N, got.Sum, len(down), tn.Sum(down))
		}
		logs.Wait(t, "connection closed", "bytes_client_to_server=23000", "bytes_server_to_client=46000")
	})
}

// TestBulkBothWays moves 64 MiB each way at the same time through one
// connection: each side writes while it reads, so a tunnel that forwards
// one direction at a time, or loses a chunk, fails.
func TestBulkBothWays(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	up := tn.Random(1, size)
	down := tn.Random(2, size)
	paths(t, func(t *testing.T, chain []host.Link) {
		serverGot := make(chan tn.Received, 1)
		srv := tn.Serve(t, func(c *net.TCPConn) { serverGot <- tn.Exchange(c, down) })
		addr, _, _ := tn.Tunnel(t, srv.Addr(), chain...)
		c := tn.Dial(t, addr)
		got := tn.Exchange(c, up)
		s := <-serverGot
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
	paths(t, func(t *testing.T, chain []host.Link) {
		const conns = 200
		srv := tn.Serve(t, tn.Echo)
		addr, _, _ := tn.Tunnel(t, srv.Addr(), chain...)

		stuck := tn.Dial(t, addr)
		_ = stuck
		srv.WaitAccepted(t, 1) // the stuck connection is through to the server

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
	})
}
