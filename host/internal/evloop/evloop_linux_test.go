//go:build linux

package evloop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// modes runs a test with splice and with read/write.
var modes = []struct {
	name      string
	readWrite bool
}{{"splice", false}, {"readwrite", true}}

// sendRandom writes n pseudo-random bytes (seeded) and returns their hash.
func sendRandom(w io.Writer, seed uint64, n int64) ([32]byte, error) {
	h := sha256.New()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 256<<10)
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		r.Read(chunk)
		h.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return [32]byte{}, err
		}
		n -= int64(len(chunk))
	}
	return [32]byte(h.Sum(nil)), nil
}

// hashAll reads to EOF and returns the count and hash of what it read.
func hashAll(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, [32]byte(h.Sum(nil)), err
}

// TestBulkBothWays sends 64 MiB each way at once and checks every byte.
func TestBulkBothWays(t *testing.T) {
	const size = 64 << 20
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			checkFDs(t)
			type result struct {
				n   int64
				sum [32]byte
				err error
			}
			serverGot := make(chan result, 1)
			serverSent := make(chan [32]byte, 1)
			_, target := startServer(t, func(c *net.TCPConn) {
				sent := make(chan struct{})
				go func() {
					defer close(sent)
					sum, _ := sendRandom(c, 2, size)
					c.CloseWrite()
					serverSent <- sum
				}()
				n, sum, err := hashAll(c)
				serverGot <- result{n, sum, err}
				<-sent
			})
			_, _, a, addr := startForwarder(t, target, fwdOptions{readWrite: m.readWrite})
			c := dial(t, addr)
			clientSent := make(chan [32]byte, 1)
			go func() {
				sum, _ := sendRandom(c, 1, size)
				c.CloseWrite()
				clientSent <- sum
			}()
			n, got, err := hashAll(c)
			if err != nil || n != size {
				t.Fatalf("client read %d bytes, err %v", n, err)
			}
			if got != <-serverSent {
				t.Error("server->client bytes differ")
			}
			sr := <-serverGot
			if sr.err != nil || sr.n != size || sr.sum != <-clientSent {
				t.Errorf("client->server: %d bytes, err %v, hash match %v", sr.n, sr.err, sr.sum == <-clientSent)
			}
			s := a.waitDone(t)
			if s.Err != nil || s.Read != [2]int64{size, size} || s.Written != [2]int64{size, size} {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestManyClients runs 200 concurrent clients each echoing random data.
func TestManyClients(t *testing.T) {
	const clients, perClient = 200, 64 << 10
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			checkFDs(t)
			_, target := startServer(t, echo)
			l, _, a, addr := startForwarder(t, target, fwdOptions{readWrite: m.readWrite})
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- echoClient(addr, uint64(i), perClient)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			for range clients {
				if s := a.waitDone(t); s.Err != nil || s.Written[1] != perClient {
					t.Errorf("stats %+v", s)
				}
			}
			if n := l.Conns(); n != 0 {
				t.Errorf("Conns() = %d after all finished", n)
			}
		})
	}
}

// echoClient sends n random bytes in random-sized writes and checks the echo.
func echoClient(addr string, seed uint64, n int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(seed, seed))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	go func() {
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(8<<10))
			if _, err := c.Write(rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
		}
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("client %d: %w", seed, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("client %d: echo differs (%d of %d bytes)", seed, len(got), n)
	}
	return nil
}

// TestServerSpeaksFirst: the client sends nothing until it gets the banner.
func TestServerSpeaksFirst(t *testing.T) {
	checkFDs(t)
	const banner = "220 hello\r\n"
	_, target := startServer(t, func(c *net.TCPConn) {
		c.Write([]byte(banner))
		line := make([]byte, 6)
		if _, err := io.ReadFull(c, line); err != nil {
			return
		}
		c.Write(append([]byte("got "), line...))
	})
	_, _, a, addr := startForwarder(t, target, fwdOptions{})
	c := dial(t, addr)
	buf := make([]byte, len(banner))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != banner {
		t.Fatalf("banner %q, %v", buf, err)
	}
	c.Write([]byte("QUIT\r\n"))
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "got QUIT\r\n" {
		t.Fatalf("reply %q, %v", rest, err)
	}
	c.Close()
	s := a.waitDone(t)
	if s.Read != [2]int64{6, int64(len(banner)) + 10} {
		t.Errorf("stats %+v", s)
	}
}

// TestHalfClose: the client sends 23,000 B and shuts down its write side;
// the server echoes them twice and closes: the client gets 46,000 B then EOF.
func TestHalfClose(t *testing.T) {
	const size = 23000
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			checkFDs(t)
			_, target := startServer(t, func(c *net.TCPConn) {
				data, err := io.ReadAll(c)
				if err != nil {
					return
				}
				c.Write(data)
				c.Write(data)
			})
			_, _, a, addr := startForwarder(t, target, fwdOptions{readWrite: m.readWrite})
			c := dial(t, addr)
			data := bytes.Repeat([]byte("0123456789"), size/10)
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, append(data, data...)) {
				t.Fatalf("got %d bytes, err %v", len(got), err)
			}
			s := a.waitDone(t)
			if s.Err != nil || s.Written != [2]int64{size, 2 * size} {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestResetPropagates: a reset on either side resets the other one.
func TestResetPropagates(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		checkFDs(t)
		serverErr := make(chan error, 1)
		_, target := startServer(t, func(c *net.TCPConn) {
			c.Write([]byte("hi"))
			_, err := io.Copy(io.Discard, c)
			serverErr <- err
		})
		_, _, a, addr := startForwarder(t, target, fwdOptions{})
		c := dial(t, addr)
		io.ReadFull(c, make([]byte, 2))
		c.SetLinger(0)
		c.Close()
		if err := <-serverErr; !isReset(err) {
			t.Errorf("server got %v, want a reset", err)
		}
		if s := a.waitDone(t); s.Err == nil || !strings.HasPrefix(s.Err.Error(), "client") {
			t.Errorf("Done err %v, want a client error", s.Err)
		}
	})
	t.Run("server", func(t *testing.T) {
		checkFDs(t)
		_, target := startServer(t, func(c *net.TCPConn) {
			c.Write([]byte("hi"))
			c.SetLinger(0)
		})
		_, _, a, addr := startForwarder(t, target, fwdOptions{})
		if c, err := net.Dial("tcp", addr); err == nil { // else reset already
			defer c.Close()
			if _, err := io.ReadAll(c); !isReset(err) {
				t.Errorf("client got %v, want a reset", err)
			}
		} else if !isReset(err) {
			t.Fatal(err)
		}
		// The reset may come before the loop sees the connect complete.
		if s := a.waitDone(t); s.Err == nil || strings.HasPrefix(s.Err.Error(), "client") {
			t.Errorf("Done err %v, want a server or dial error", s.Err)
		}
	})
}

// neverReads is a server handler that holds the connection without reading
// until the peer goes away (a zero-length read does not consume bytes, so
// it detects nothing: the handler waits for the test's cleanup close).
func neverReads(stop <-chan struct{}) func(c *net.TCPConn) {
	return func(c *net.TCPConn) { <-stop }
}

// startStalled runs a client that sends 50 MiB through the loop to a server
// that never reads, and returns once the loop has stopped reading the client.
func startStalled(t *testing.T, o fwdOptions) (*Loop, *testAcceptor, <-chan error) {
	t.Helper()
	const size = 50 << 20
	stop := make(chan struct{})
	_, target := startServer(t, neverReads(stop))
	t.Cleanup(func() { close(stop) }) // runs before the server cleanup
	l, _, a, addr := startForwarder(t, target, o)
	c := dial(t, addr)
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		var err error
		for sent := 0; sent < size && err == nil; sent += len(buf) {
			_, err = c.Write(buf)
		}
		werr <- err
	}()
	waitFor(t, l, "backpressure", func() bool {
		if len(l.conns) != 1 {
			return false
		}
		c := l.conns[0]
		return c.state == connected && c.half[client].pending > 0 && !c.ep[server].writable
	})
	return l, a, werr
}

// TestBackpressure: a server that never reads does not make the loop hold
// more than one pipe or buffer for the direction, nor the process grow.
func TestBackpressure(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			checkFDs(t)
			rssBefore := rss(t)
			l, a, werr := startStalled(t, fwdOptions{readWrite: m.readWrite})
			inspect(t, l, func() {
				c := l.conns[0]
				s := c.stats
				if held := s.Read[0] - s.Written[0]; held > max(pipeCapacity, bufferSize) {
					t.Errorf("loop holds %d bytes for the stalled direction", held)
				}
				if c.half[server].hasPipe || c.half[server].buf != nil {
					t.Error("idle direction holds a pipe or buffer")
				}
				t.Logf("read from client %d B, written to server %d B", s.Read[0], s.Written[0])
			})
			if grown := rss(t) - rssBefore; grown > 32<<20 {
				t.Errorf("RSS grew by %d MiB", grown>>20)
			}
			l.Abort(errors.New("test over"))
			if err := <-werr; !isReset(err) {
				t.Errorf("client write error %v, want a reset", err)
			}
			if s := a.waitDone(t); s.Err == nil || s.Err.Error() != "test over" {
				t.Errorf("Done err %v", s.Err)
			}
		})
	}
}

// TestTeardownNeverWaits: Close, Abort and the idle timeout finish a
// connection with 50 MiB queued to a server that never reads, at once.
func TestTeardownNeverWaits(t *testing.T) {
	const bound = 2 * time.Second
	const idle = 300 * time.Millisecond
	check := func(t *testing.T, a *testAcceptor, werr <-chan error, start time.Time, limit time.Duration, want string) {
		t.Helper()
		s := a.waitDone(t)
		if took := time.Since(start); took > limit {
			t.Errorf("teardown took %v", took)
		}
		if s.Err == nil || !strings.Contains(s.Err.Error(), want) {
			t.Errorf("Done err %v, want %q", s.Err, want)
		}
		if err := <-werr; !isReset(err) {
			t.Errorf("client write error %v, want a reset", err)
		}
	}
	t.Run("Close", func(t *testing.T) {
		checkFDs(t)
		l, a, werr := startStalled(t, fwdOptions{})
		start := time.Now()
		l.Close()
		if took := time.Since(start); took > bound {
			t.Errorf("Close took %v", took)
		}
		check(t, a, werr, start, bound, "loop closed")
	})
	t.Run("Abort", func(t *testing.T) {
		checkFDs(t)
		l, a, werr := startStalled(t, fwdOptions{})
		start := time.Now()
		l.Abort(errors.New("shutting down"))
		if took := time.Since(start); took > bound {
			t.Errorf("Abort took %v", took)
		}
		check(t, a, werr, start, bound, "shutting down")
		if n := l.Conns(); n != 0 {
			t.Errorf("Conns() = %d after Abort", n)
		}
	})
	t.Run("Idle", func(t *testing.T) {
		checkFDs(t)
		l, a, werr := startStalled(t, fwdOptions{idleTimeout: idle})
		var last int64
		inspect(t, l, func() { last = l.conns[0].lastActive })
		start := l.epoch.Add(time.Duration(last)) // no byte moved since
		check(t, a, werr, start, idle+bound, "idle for 300ms")
	})
}

// TestIdleTimeout: a connection that trickles bytes stays up; once quiet it
// is reset after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	checkFDs(t)
	// A byte every idle/10: a late wake-up of up to 9/10 of the timeout on
	// a busy machine still keeps the connection active.
	const idle = 500 * time.Millisecond
	_, target := startServer(t, echo)
	_, _, a, addr := startForwarder(t, target, fwdOptions{idleTimeout: idle})
	c := dial(t, addr)
	buf := make([]byte, 1)
	const trickle = 12 // 12 x idle/10: longer than the timeout in total
	var quiet time.Time
	for range trickle {
		time.Sleep(idle / 10) // pacing of the trickle, not a wait
		// The quiet starts no earlier than this write: the loop's last
		// activity (reading it, writing the echo) comes after it. Stamped
		// after the echo arrived instead, it could be a few ms late, and a
		// timely reset look early.
		quiet = time.Now()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("closed while active: %v", err)
		}
	}
	if _, err := io.ReadAll(c); !isReset(err) {
		t.Errorf("client got %v, want a reset", err)
	}
	if took := time.Since(quiet); took < idle || took > idle+2*time.Second {
		t.Errorf("reset after %v of quiet, want about %v", took, idle)
	}
	if s := a.waitDone(t); !errors.Is(s.Err, os.ErrDeadlineExceeded) || s.Read[0] != trickle {
		t.Errorf("stats %+v", s)
	}
}

// TestDialRefused: Done names the target; the client gets a reset.
func TestDialRefused(t *testing.T) {
	checkFDs(t)
	fd, target := listenFD(t)
	unix.Close(fd) // nothing listens there any more
	_, _, a, addr := startForwarder(t, target, fwdOptions{})
	// The reset may come before the client's connect completes, before its
	// bytes or after them: one of the three calls sees it.
	c, err := net.Dial("tcp", addr)
	if err == nil {
		defer c.Close()
		_, werr := c.Write([]byte("early bytes"))
		if _, rerr := io.ReadAll(c); !isReset(werr) && !isReset(rerr) {
			t.Errorf("client got %v / %v, want a reset", werr, rerr)
		}
	} else if !isReset(err) {
		t.Fatal(err)
	}
	s := a.waitDone(t)
	if !errors.Is(s.Err, unix.ECONNREFUSED) || !strings.Contains(s.Err.Error(), "dial "+target.String()) {
		t.Errorf("Done err %v", s.Err)
	}
	if s.Read[0] != 0 {
		t.Errorf("read %d client bytes before the dial completed", s.Read[0])
	}
}

// TestDialTimeout: the loop's timer ends a dial that never completes.
func TestDialTimeout(t *testing.T) {
	checkFDs(t)
	const dialTimeout = 200 * time.Millisecond
	// A listener with a full accept queue drops SYNs: connects hang.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	unix.Listen(fd, 0)
	sa, _ := unix.Getsockname(fd)
	target := sockaddrToAddrPort(sa)
	for range 3 { // fill the queue (backlog 0 admits one or two)
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		if c, err := d.Dial("tcp", target.String()); err == nil {
			defer c.Close()
		}
	}
	_, _, a, addr := startForwarder(t, target, fwdOptions{dialTimeout: dialTimeout})
	c := dial(t, addr)
	start := time.Now()
	if _, err := io.ReadAll(c); !isReset(err) {
		t.Errorf("client got %v, want a reset", err)
	}
	s := a.waitDone(t)
	if took := time.Since(start); took > dialTimeout+2*time.Second {
		t.Errorf("dial ended after %v", took)
	}
	if !errors.Is(s.Err, os.ErrDeadlineExceeded) || !strings.Contains(s.Err.Error(), target.String()) {
		t.Errorf("Done err %v", s.Err)
	}
}

// TestAdmitResume: with a cap of 2, the third client is accepted only after
// one of the first two ends.
func TestAdmitResume(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	_, _, a, addr := startForwarder(t, target, fwdOptions{limit: 2})
	roundTrip := func(c *net.TCPConn) error {
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 4))
		return err
	}
	c1, c2 := dial(t, addr), dial(t, addr)
	for _, c := range []*net.TCPConn{c1, c2} {
		if err := roundTrip(c); err != nil {
			t.Fatal(err)
		}
	}
	c3 := dial(t, addr) // completes in the kernel backlog
	third := make(chan error, 1)
	go func() { third <- roundTrip(c3) }()
	select {
	case err := <-third:
		t.Fatalf("third client served while at the cap (%v)", err)
	case <-time.After(100 * time.Millisecond): // a negative check needs a window
	}
	if n := a.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d, want 2", n)
	}
	c1.Close()
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if n := a.accepted.Load(); n != 3 {
		t.Errorf("accepted %d, want 3", n)
	}
}

// TestListenerClose: closing the listener keeps accepted connections.
func TestListenerClose(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	_, ln, a, addr := startForwarder(t, target, fwdOptions{})
	c := dial(t, addr)
	c.Write([]byte("a"))
	io.ReadFull(c, make([]byte, 1))
	ln.Close()
	ln.Close() // idempotent
	if c2, err := net.Dial("tcp", addr); err == nil {
		c2.Close()
		t.Error("dial succeeded after Listener.Close")
	}
	c.Write([]byte("b"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("connection broken by Listener.Close: %v", err)
	}
	c.CloseWrite()
	io.ReadAll(c)
	if s := a.waitDone(t); s.Err != nil {
		t.Errorf("Done err %v", s.Err)
	}
}

// TestAcceptedTaken: a nil plan hands the fd to the caller.
func TestAcceptedTaken(t *testing.T) {
	checkFDs(t)
	taken := make(chan net.Conn, 1)
	take := func(fd int) bool {
		f := os.NewFile(uintptr(fd), "taken")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			panic(err)
		}
		taken <- c
		return true
	}
	l, _, _, addr := startForwarder(t, netip.AddrPort{}, fwdOptions{take: take})
	c := dial(t, addr)
	s := <-taken
	defer s.Close()
	s.Write([]byte("mine"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "mine" {
		t.Fatalf("got %q, %v", buf, err)
	}
	if n := l.Conns(); n != 0 {
		t.Errorf("Conns() = %d for a taken fd", n)
	}
}

// TestCloseIdempotent: Close twice, and calls after Close, return.
func TestCloseIdempotent(t *testing.T) {
	checkFDs(t)
	l, ln, _, _ := startForwarder(t, netip.MustParseAddrPort("127.0.0.1:1"), fwdOptions{})
	l.Close()
	l.Close()
	l.Abort(nil)
	ln.Resume()
	ln.Close()
	fd, _ := listenFD(t)
	defer unix.Close(fd)
	if _, err := l.AddListener(fd, &testAcceptor{}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddListener after Close: %v", err)
	}
}

// TestIdleMemory opens 2,000 idle connections through the loop and reports
// the heap and RSS they cost.
func TestIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 8,000 sockets")
	}
	const conns = 2000
	checkFDs(t)
	srvFD, target := listenFD(t)
	defer unix.Close(srvFD)
	l, _, _, addr := startForwarder(t, target, fwdOptions{})
	loopAddr := netip.MustParseAddrPort(addr)
	clientFDs := make([]int, 0, conns)
	serverFDs := make([]int, 0, conns)
	defer func() {
		for _, fd := range append(clientFDs, serverFDs...) {
			unix.Close(fd)
		}
	}()
	heapBefore, rssBefore := heapInUse(), rss(t)
	for range conns {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		clientFDs = append(clientFDs, fd)
		sa, _ := addrPortToSockaddr(loopAddr)
		if err := unix.Connect(fd, sa); err != nil {
			t.Fatal(err)
		}
	}
	// The loop dials the server for each; accept those (non-blocking fd).
	deadline := time.Now().Add(testWait)
	for len(serverFDs) < conns {
		fd, _, err := unix.Accept4(srvFD, unix.SOCK_CLOEXEC)
		if err == nil {
			serverFDs = append(serverFDs, fd)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("accepted %d of %d: %v", len(serverFDs), conns, err)
		}
		time.Sleep(pollStep)
	}
	waitFor(t, l, "all connected", func() bool {
		for _, c := range l.conns {
			if c.state != connected {
				return false
			}
		}
		return len(l.conns) == conns
	})
	heapAfter, rssAfter := heapInUse(), rss(t)
	heapPer := float64(heapAfter-heapBefore) / conns
	t.Logf("%d idle connections: heap %.0f B/conn, RSS %.0f B/conn (includes the Plan and Done closure of the test acceptor; RSS is noisy)",
		conns, heapPer, float64(rssAfter-rssBefore)/conns)
	inspect(t, l, func() {
		for _, c := range l.conns {
			for s := range c.half {
				if c.half[s].hasPipe || c.half[s].buf != nil {
					t.Fatal("idle connection holds a pipe or buffer")
				}
			}
		}
	})
	if heapPer > 2048 {
		t.Errorf("heap per idle connection %.0f B, want < 2 KiB", heapPer)
	}
}

// heapInUse is the live heap after a GC.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// rss is the resident set size of the process.
func rss(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// peerAcceptor forwards every connection to target and reports the peer
// address the loop gave it.
type peerAcceptor struct {
	target netip.AddrPort
	peers  chan netip.AddrPort
}

func (a *peerAcceptor) Admit() bool { return true }

func (a *peerAcceptor) Accepted(fd int, peer netip.AddrPort) *Plan {
	a.peers <- peer
	return &Plan{Target: a.target, DialTimeout: testWait}
}

// TestAcceptedPeerAddress: the peer address given to Accepted is the
// client's, on IPv4 and IPv6 listeners alike.
func TestAcceptedPeerAddress(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, echo)
	for _, family := range []struct {
		name string
		af   int
		sa   unix.Sockaddr
	}{
		{"ipv4", unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}},
		{"ipv6", unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}},
	} {
		t.Run(family.name, func(t *testing.T) {
			l, err := newLoop(nil, true)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			fd, err := unix.Socket(family.af, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Bind(fd, family.sa); err != nil {
				unix.Close(fd)
				t.Fatalf("bind %s loopback: %v", family.name, err)
			}
			if err := unix.Listen(fd, 16); err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
			sa, err := unix.Getsockname(fd)
			if err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
			a := &peerAcceptor{target: target, peers: make(chan netip.AddrPort, 1)}
			if _, err := l.AddListener(fd, a); err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
			c := dial(t, sockaddrToAddrPort(sa).String())
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
				t.Fatalf("echo: %q, %v", got, err)
			}
			want := c.LocalAddr().(*net.TCPAddr).AddrPort()
			select {
			case peer := <-a.peers:
				if peer != want {
					t.Fatalf("Accepted got peer %v, want the client's %v", peer, want)
				}
			case <-time.After(testWait):
				t.Fatal("Accepted was not called")
			}
		})
	}
}

// acceptErrors counts the loop's "evloop: accept" error records and
// signals the first.
type acceptErrors struct {
	n     atomic.Int64
	first chan struct{}
}

func (h *acceptErrors) Enabled(context.Context, slog.Level) bool { return true }
func (h *acceptErrors) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *acceptErrors) WithGroup(string) slog.Handler            { return h }
func (h *acceptErrors) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "evloop: accept") && h.n.Add(1) == 1 {
		close(h.first)
	}
	return nil
}

// TestListenerErrorDoesNotSpin: a listener whose accept4 keeps failing
// while epoll keeps reporting it (here shut down under the loop, so it is
// readable and accept4 says EINVAL) must not turn the level-triggered loop
// into a busy loop: it rests acceptRetryDelay between tries, as it does
// when out of file descriptors.
func TestListenerErrorDoesNotSpin(t *testing.T) {
	t.Parallel()
	h := &acceptErrors{first: make(chan struct{})}
	l, err := newLoop(slog.New(h), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	fd, _ := listenFD(t)
	if _, err := l.AddListener(fd, &testAcceptor{}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.Shutdown(fd, unix.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.first:
	case <-time.After(testWait):
		t.Fatal("no accept error logged for a listener that was shut down")
	}
	// A busy loop turns hundreds of thousands of times in this time (it
	// did, twice: accepting at every epoll_wait, then woken by EPOLLHUP
	// while paused); resting, a few times per retry.
	turns := func() (n uint64) {
		l.call(func() { n = l.turns })
		return n
	}
	const watch = 500 * time.Millisecond
	before := turns()
	time.Sleep(watch)
	if n := turns() - before; n > 10*uint64(watch/acceptRetryDelay)+10 {
		t.Errorf("the loop turned %d times in %v after the listener failed: it spins on it", n, watch)
	}
	if n := h.n.Load(); n > int64(2*watch/acceptRetryDelay)+2 {
		t.Errorf("%d accept errors logged within %v of the first, want one per retry", n, watch)
	}
}

// TestAcceptBurst: a backlog that builds up is taken acceptBurst at a time
// once the listener is reported in consecutive turns, not one connection
// per turn of the loop (turns that bulk transfers can make long).
func TestAcceptBurst(t *testing.T) {
	t.Parallel()
	l, err := newLoop(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	const conns = 2*acceptBurst + 4
	fd, addr := listenFD(t)
	for range conns { // completed by the kernel, waiting in the backlog
		dial(t, addr.String())
	}
	var first, last uint64
	taken := 0
	all := make(chan struct{})
	a := &testAcceptor{take: func(fd int) bool { // on the loop thread
		if taken == 0 {
			first = l.turns
		}
		last = l.turns
		unix.Close(fd)
		if taken++; taken == conns {
			close(all)
		}
		return true
	}}
	if _, err := l.AddListener(fd, a); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(testWait):
		t.Fatalf("accepted %d of %d connections", a.accepted.Load(), conns)
	}
	var spread uint64
	l.call(func() { spread = last - first })
	// One at the first event, then acceptBurst a turn: four turns.
	if spread > 4 {
		t.Errorf("%d connections waiting in the backlog took %d turns of the loop to accept, want at most 4", conns, spread+1)
	}
}

// TestAcceptedSocketsNoDelay: a connection the loop accepts has Nagle's
// algorithm off without a system call of its own: AddListener sets
// TCP_NODELAY on the listener, whose accepted sockets inherit it (the
// listener here is a raw socket that never had it).
func TestAcceptedSocketsNoDelay(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, echo)
	nodelay := make(chan int, 1)
	_, _, a, addr := startForwarder(t, target, fwdOptions{take: func(fd int) bool {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		if err != nil {
			v = -1
		}
		nodelay <- v
		return false
	}})
	c := dial(t, addr)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "ping" || err != nil {
		t.Fatalf("echo %q, %v", got, err)
	}
	c.Close()
	a.waitDone(t)
	if v := <-nodelay; v != 1 {
		t.Errorf("TCP_NODELAY of the accepted socket: %d, want 1", v)
	}
}

// TestDialRefusedIPv6: a connect over IPv6 to a port nothing listens on
// fails as over IPv4: the refusal comes back as EPOLLERR, the one event
// on which completeDial reads SO_ERROR, and Done names it; the client is
// reset and the dial is not counted as connected.
func TestDialRefusedIPv6(t *testing.T) {
	checkFDs(t)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close() // nothing listens there any more
	_, _, a, addr := startForwarder(t, target, fwdOptions{})
	c, err := net.Dial("tcp", addr)
	if err == nil {
		defer c.Close()
		if _, err := io.ReadAll(c); !isReset(err) {
			t.Errorf("client got %v, want a reset", err)
		}
	} else if !isReset(err) {
		t.Fatal(err)
	}
	s := a.waitDone(t)
	if !errors.Is(s.Err, unix.ECONNREFUSED) || !strings.Contains(s.Err.Error(), "dial "+target.String()) || s.Connected {
		t.Errorf("Done: err %v, connected %v; want ECONNREFUSED naming %s, not connected", s.Err, s.Connected, target)
	}
}

// TestTwoLoopsOneListener: two loops poll one listening socket, each with
// a descriptor of its own (as the Proxy's loops do, one per CPU): every
// connection is accepted by one of them and forwarded. When one loop closes
// its side, the other accepts everything that follows, and the first is not
// woken for them: epoll keeps a registration until every descriptor of the
// socket is closed, so a close without EPOLL_CTL_DEL left the loop hearing
// of the listener, level-triggered, under a closed number, turn after turn.
func TestTwoLoopsOneListener(t *testing.T) {
	t.Parallel()
	_, target := startServer(t, echo)
	fd, addr := listenFD(t)
	fd2, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var loops [2]*Loop
	var accs [2]*testAcceptor
	var lns [2]*Listener
	for i, f := range []int{fd, fd2} {
		l, err := newLoop(nil, true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		accs[i] = &testAcceptor{target: target, dialTimeout: testWait, done: make(chan Stats, 1000)}
		if lns[i], err = l.AddListener(f, accs[i]); err != nil {
			t.Fatal(err)
		}
		loops[i] = l
	}
	echoes := func(n int) {
		t.Helper()
		for i := range n {
			c := dial(t, addr.String())
			c.SetDeadline(time.Now().Add(testWait))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			if got, err := io.ReadAll(c); string(got) != "ping" || err != nil {
				t.Fatalf("connection %d: echo %q, %v", i, got, err)
			}
			c.Close()
		}
	}
	echoes(100)
	if n := accs[0].accepted.Load() + accs[1].accepted.Load(); n != 100 {
		t.Fatalf("the loops accepted %d connections, want 100", n)
	}
	lns[0].Close()
	before0 := accs[0].accepted.Load()
	var turns0 uint64
	inspect(t, loops[0], func() { turns0 = loops[0].turns })
	echoes(100)
	var turns1 uint64
	inspect(t, loops[0], func() { turns1 = loops[0].turns })
	if n := accs[0].accepted.Load(); n != before0 {
		t.Errorf("the loop whose listener is closed accepted %d more connections", n-before0)
	}
	// Its connections of the first round ending, and the inspect calls,
	// make a few turns; being woken for the listener made hundreds.
	if d := turns1 - turns0; d > 50 {
		t.Errorf("the loop whose listener is closed made %d turns while 100 clients connected to the other", d)
	}
}
