package main

// Regression tests of the hangs of issue 9, run through the binary: a
// connection the tunnel cannot move (its server stopped reading), a plugin
// that spins, clients that leave without reading. Each test bounds every
// wait and says what hung; the tunnel must close such connections itself
// (its log shows it), not leave them to the exit of the process.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// forwardingPaths are the ways the tunnel moves bytes: splice(2) between
// the sockets when nothing looks at them, and the filter chain otherwise,
// here the default hex dump (its stdout dropped) or a plugin that forwards
// every chunk unchanged.
var forwardingPaths = []struct {
	name string
	args []string
}{
	{"spliced", []string{"--dump", "none"}},
	{"hexdump", []string{"--dump", "hex"}},
	{"plugin", []string{"--dump", "none", "--plugin", "../../host/plugin/testdata/noop.wasm"}},
}

// stuckConn is a client connection through the tunnel to a server that
// accepted it and never reads: the client writes stuckTotal bytes, and its
// write blocks once every buffer on the way is full.
type stuckConn struct {
	client   *net.TCPConn
	server   net.Conn
	written  atomic.Int64
	writeErr chan error // the result of the client's write
}

// stuckTotal is more than the socket buffers on the way hold together.
const stuckTotal = 50 << 20

// startStuck connects a client to the tunnel at addr, which forwards to
// the stall server whose accepts arrive on accepted, and returns once the
// server has accepted and the client's write has stopped making progress.
func startStuck(t *testing.T, addr string, accepted <-chan net.Conn) *stuckConn {
	t.Helper()
	s := &stuckConn{client: dial(t, addr), writeErr: make(chan error, 1)}
	go func() {
		buf := bytes.Repeat([]byte("stuck..."), 8<<10) // 64 KiB
		for s.written.Load() < stuckTotal {
			n, err := s.client.Write(buf)
			s.written.Add(int64(n))
			if err != nil {
				s.writeErr <- err
				return
			}
		}
		s.writeErr <- nil
	}()
	select {
	case s.server = <-accepted:
	case <-time.After(cliTimeout):
		t.Fatalf("the tunnel never dialled the server in %v", cliTimeout)
	}
	// Stalled: no byte written for stallFor, with at least 1 MiB through.
	const poll, stallFor = 20 * time.Millisecond, 300 * time.Millisecond
	deadline := time.Now().Add(cliTimeout)
	last, since := int64(-1), time.Now()
	for {
		select {
		case err := <-s.writeErr:
			t.Fatalf("the client's write of %d MiB ended before filling the buffers (%d bytes written): %v", stuckTotal>>20, s.written.Load(), err)
		case <-time.After(poll):
		}
		n := s.written.Load()
		if n != last {
			last, since = n, time.Now()
		} else if n >= 1<<20 && time.Since(since) >= stallFor {
			t.Logf("client write stalled after %.1f MiB", float64(n)/(1<<20))
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client's write never stalled in %v (%d bytes written): is the server reading?", cliTimeout, n)
		}
	}
}

// clientClosed waits up to d for the client's blocked write to fail, as it
// does once the tunnel closes the connection, and returns the error.
func (s *stuckConn) clientClosed(t *testing.T, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-s.writeErr:
		if err == nil {
			t.Fatalf("%s: the client wrote all %d bytes to a server that never reads", what, stuckTotal)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: the client's write timed out instead of failing because the tunnel closed the connection: %v", what, err)
		}
		return err
	case <-time.After(d):
		t.Fatalf("%s: the client's write is still blocked %v later (%d bytes written): the tunnel did not close the connection", what, d, s.written.Load())
		return nil
	}
}

// serverClosed drains the server side and fails unless it ends (EOF or
// reset) within d, as it does once the tunnel has closed its socket.
func (s *stuckConn) serverClosed(t *testing.T, d time.Duration, what string) {
	t.Helper()
	s.server.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, s.server)
	if err != nil && !isReset(err) {
		t.Errorf("%s: the server side is still open after reading %d bytes for %v: %v", what, n, d, err)
	}
}

// hungShutdown is the line main logs when the engine's Shutdown did not
// return and the process exits with connections open.
const hungShutdown = "did not return"

// checkExit fails the test unless p exits with status 0 within bound of
// the signal sent at start. When it does not, it waits up to backstop (when
// main stops waiting for the engine) plus a second more, to tell an engine
// whose Shutdown hung from a process that does not exit at all.
func checkExit(t *testing.T, p *proc, start time.Time, bound, backstop time.Duration, what string) {
	t.Helper()
	if !p.exitedWithin(time.Until(start.Add(bound))) {
		if p.exitedWithin(time.Until(start.Add(backstop + time.Second))) {
			t.Fatalf("%s: the tunnel exited %v later, want within %v: the engine's Shutdown hung and main gave up on it; stderr:\n%s",
				what, time.Since(start).Round(time.Millisecond), bound, p.stderr)
		}
		t.Fatalf("%s: the tunnel is still running %v later, past main's own bound of %v: shutdown hung; stderr:\n%s",
			what, time.Since(start).Round(time.Millisecond), backstop, p.stderr)
	}
	t.Logf("%s: exited %v later", what, time.Since(start).Round(time.Millisecond))
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s: exit status %d, want 0; stderr:\n%s", what, code, p.stderr)
	}
}

// checkClosedByTunnel fails unless the log shows the tunnel closed
// connection conn itself, with an error matching errRe.
func checkClosedByTunnel(t *testing.T, p *proc, conn int, errRe string) {
	t.Helper()
	log := p.stderr.String()
	if strings.Contains(log, hungShutdown) {
		t.Errorf("the engine's Shutdown hung: main gave up on it and exited with the connection still open; stderr:\n%s", log)
		return
	}
	re := fmt.Sprintf(`msg="connection closed" conn=%d .*err="%s`, conn, errRe)
	if !regexp.MustCompile(re).MatchString(log) {
		t.Errorf("the tunnel never closed connection %d itself (no log line matching %q); stderr:\n%s", conn, re, log)
	}
}

// TestHangShutdownStuckServer: SIGTERM with --grace 1s while a connection
// is stuck on a server that does not read: the grace period ends, the
// tunnel closes the connection and exits 0 within a second more.
func TestHangShutdownStuckServer(t *testing.T) {
	t.Parallel()
	for _, path := range forwardingPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			const grace = time.Second
			target, accepted := stallServer(t)
			p, addr := startPlainWith(t, newDiscard(), target, append(path.args, "--grace", grace.String())...)
			s := startStuck(t, addr, accepted)

			start := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			checkExit(t, p, start, grace+time.Second, grace+stopWaitAfterGrace, "SIGTERM with --grace 1s and a connection stuck on a server that does not read")
			if elapsed := time.Since(start); elapsed < grace-50*time.Millisecond {
				t.Errorf("exited %v after SIGTERM, before the %v grace period", elapsed, grace)
			}
			s.clientClosed(t, time.Second, "after the exit")
			checkClosedByTunnel(t, p, 1, "context deadline exceeded|proxy shut down")
		})
	}
}

// TestHangShutdownSecondSignal: a second SIGTERM during a long grace
// period closes the stuck connection and ends the tunnel at once.
func TestHangShutdownSecondSignal(t *testing.T) {
	t.Parallel()
	for _, path := range forwardingPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			target, accepted := stallServer(t)
			p, addr := startPlainWith(t, newDiscard(), target, append(path.args, "--grace", "30s")...)
			s := startStuck(t, addr, accepted)

			start := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			// Two signals sent back to back may merge into one (the kernel
			// and the Go runtime keep one pending signal of each kind), so
			// the second goes once the first has been handled.
			p.stderr.waitWithin(t, 2*time.Second, `msg="shutting down"`)
			p.cmd.Process.Signal(syscall.SIGTERM)
			checkExit(t, p, start, 2*time.Second, 2*time.Second, "two SIGTERMs with --grace 30s and a stuck connection")
			if !strings.Contains(p.stderr.String(), "second signal") {
				t.Errorf("stderr does not mention the second signal:\n%s", p.stderr)
			}
			s.clientClosed(t, time.Second, "after the exit")
			checkClosedByTunnel(t, p, 1, "context canceled|proxy shut down")
		})
	}
}

// TestHangIdleTimeout: --idle-timeout closes a connection stuck on a
// server that does not read: no byte moves either way, so it is idle.
func TestHangIdleTimeout(t *testing.T) {
	t.Parallel()
	for _, path := range forwardingPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			const idle = time.Second
			target, accepted := stallServer(t)
			p, addr := startPlainWith(t, newDiscard(), target, append(path.args, "--idle-timeout", idle.String())...)
			s := startStuck(t, addr, accepted)

			// The connection has been idle since a little before the stall
			// was seen; the sweeper may notice up to one timeout late.
			within := idle + 2*time.Second
			what := fmt.Sprintf("--idle-timeout %v on a connection stuck on a server that does not read", idle)
			s.clientClosed(t, within, what)
			s.serverClosed(t, 2*time.Second, what)
			p.stderr.waitWithin(t, time.Second, `msg="connection closed" conn=1 .*err="idle for 1s"`)

			p.cmd.Process.Signal(syscall.SIGTERM)
			checkExit(t, p, time.Now(), 2*time.Second, 10*time.Second+stopWaitAfterGrace, "SIGTERM once the idle connection is closed")
		})
	}
}

// TestHangPluginLoop: a plugin that spins in on_data, one instance, a
// 300ms call timeout, two connections pinned to it. Connection A makes the
// guest spin; connection B sends a byte while it does. The call is cut off, the
// plugin fails, and the tunnel closes both connections; then SIGTERM ends
// it at once (nothing is left open to wait for).
func TestHangPluginLoop(t *testing.T) {
	t.Parallel()
	loop, err := filepath.Abs("../../host/plugin/testdata/loop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	const callTimeout = 300 * time.Millisecond
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	src := fmt.Sprintf(`
plugin "loop" {
  path         = %q
  instances    = 1
  call_timeout = %q
}
route "r" {
  listen = "127.0.0.1:0"
  target = %q
  dump {
    enabled = false
  }
  chain {
    plugin = plugin.loop
  }
}
`, loop, callTimeout.String(), echoServer(t))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--config", path, "--grace", "10s", "--log-level", "debug") // debug: "connection opened"
	addr := p.stderr.wait(t, `msg=listening route=r addr=(127\.0\.0\.1:\d+)`)[1]

	// Both connections open first, so both are pinned to the one
	// instance when it fails (B opened after the failure would get a
	// fresh instance).
	a := dial(t, addr)
	p.stderr.waitWithin(t, 2*time.Second, `msg="connection opened" conn=1 `)
	b := dial(t, addr)
	p.stderr.waitWithin(t, 2*time.Second, `msg="connection opened" conn=2 `)
	start := time.Now()
	io.WriteString(a, "a")
	p.stderr.waitWithin(t, 2*time.Second, `msg=spinning .*conn=1`)
	io.WriteString(b, "b")

	// A's call is cut off after callTimeout; B may need a call of its own
	// on the same instance (or its replacement) before it fails too.
	bound := 2*callTimeout + 2*time.Second
	var wg sync.WaitGroup
	for _, c := range []struct {
		name string
		conn *net.TCPConn
	}{{"A (the guest spins on its byte)", a}, {"B (sent a byte while A's guest spins)", b}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.conn.SetReadDeadline(start.Add(bound))
			rest, err := io.ReadAll(c.conn)
			if err != nil && !isReset(err) {
				t.Errorf("connection %s not closed by the tunnel %v after A's byte (call_timeout %v): %v", c.name, time.Since(start).Round(time.Millisecond), callTimeout, err)
			} else if len(rest) != 0 {
				t.Errorf("connection %s received %q through a plugin that never returns", c.name, rest)
			}
		}()
	}
	wg.Wait()
	// The log lines follow the close of the sockets.
	p.stderr.waitWithin(t, time.Second, `msg="plugin failed"`)
	for conn, name := range []string{1: "A", 2: "B"} {
		if conn > 0 {
			closed := regexp.MustCompile(fmt.Sprintf(`msg="connection closed" conn=%d `, conn))
			p.stderr.waitUntil(t, time.Second, fmt.Sprintf("showed connection %d (%s) closed", conn, name), closed.MatchString)
		}
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	checkExit(t, p, time.Now(), 2*time.Second, 10*time.Second+stopWaitAfterGrace, "SIGTERM (--grace 10s) once both connections are closed")
	if strings.Contains(p.stderr.String(), hungShutdown) {
		t.Errorf("the configuration's Shutdown hung; stderr:\n%s", p.stderr)
	}
}

// TestHangEchoUnread: clients that send 1 MiB through an echo server,
// half-close, never read the echo and close: the tunnel closes every one
// of their connections, on both sides.
func TestHangEchoUnread(t *testing.T) {
	t.Parallel()
	for _, path := range forwardingPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			const clients, size = 50, 1 << 20
			ended := make(chan error, clients)
			target := server(t, func(c net.Conn) { ended <- echo(c) })
			p, addr := startPlainWith(t, newDiscard(), target, path.args...)

			payload := bytes.Repeat([]byte("unread.."), size/8)
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.DialTimeout("tcp", addr, cliTimeout)
					if err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(cliTimeout))
					if n, err := c.Write(payload); err != nil {
						t.Errorf("client %d: writing %d bytes through the tunnel: %d written, %v", i, size, n, err)
						return
					}
					if err := c.(*net.TCPConn).CloseWrite(); err != nil {
						t.Errorf("client %d: half-close: %v", i, err)
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}

			// Every client has closed: the tunnel must close all of them.
			start := time.Now()
			const bound = 10 * time.Second
			closed := regexp.MustCompile(`msg="connection closed" conn=\d+ `)
			p.stderr.waitUntil(t, bound, fmt.Sprintf("showed %d connections closed", clients), func(log string) bool {
				return len(closed.FindAllString(log, -1)) == clients
			})
			for n := 0; n < clients; n++ {
				select {
				case <-ended:
				case <-time.After(bound - time.Since(start)):
					t.Fatalf("the server still has %d of %d connections open %v after the clients closed", clients-n, clients, bound)
				}
			}
			t.Logf("all %d connections closed %v after the last client", clients, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestShutdownBounded: shutdown returns at most stopWaitAfterGrace after
// the grace period even when the engine's Shutdown never does, and says so.
func TestShutdownBounded(t *testing.T) {
	t.Parallel()
	stop, release := hungStop(t)
	log := newOutput()
	logger := slog.New(slog.NewTextHandler(log, nil))
	const grace = 200 * time.Millisecond
	start := time.Now()
	if shutdown("proxy shutdown", stop, grace, nil, logger) {
		t.Error("shutdown reports that a Shutdown that never returns finished")
	}
	elapsed := time.Since(start)
	release()
	if elapsed < grace+stopWaitAfterGrace || elapsed > grace+stopWaitAfterGrace+time.Second {
		t.Errorf("shutdown returned %v after it began, want %v (grace) + %v", elapsed, grace, stopWaitAfterGrace)
	}
	if want := "level=ERROR msg=\"proxy shutdown did not return"; !strings.Contains(log.String(), want) {
		t.Errorf("log does not contain %q:\n%s", want, log.String())
	}
}

// TestShutdownSecondSignal: a second signal makes shutdown return at once
// (after stopWaitAfterSecond), whatever the engine's Shutdown does.
func TestShutdownSecondSignal(t *testing.T) {
	t.Parallel()
	stop, release := hungStop(t)
	defer release()
	log := newOutput()
	logger := slog.New(slog.NewTextHandler(log, nil))
	again := make(chan struct{})
	close(again)
	start := time.Now()
	shutdown("proxy shutdown", stop, time.Hour, again, logger)
	if elapsed := time.Since(start); elapsed > stopWaitAfterSecond+500*time.Millisecond {
		t.Errorf("shutdown returned %v after a second signal, want %v", elapsed, stopWaitAfterSecond)
	}
	for _, want := range []string{`msg="second signal: closing now"`, `msg="proxy shutdown did not return`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log does not contain %q:\n%s", want, log.String())
		}
	}
}

// hungStop is a Shutdown that ignores its context and returns only once
// release is called (so that no goroutine outlives the test).
func hungStop(t *testing.T) (stop func(context.Context) error, release func()) {
	unblock := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(release)
	return func(context.Context) error { <-unblock; return nil }, release
}

// TestStderrNotReadDoesNotStall: the log's reader stops reading (a pipe
// whose reader is busy, a terminal paused with Ctrl-S). The tunnel logs a
// line per connection on the goroutine that forwards it, and a pipe holds
// 64 KiB, about 280 such lines: once it was full, a write(2) to stderr
// blocked the loop and every connection with it. Now lines that stderr
// does not take are dropped and counted, forwarding goes on, and once
// stderr is read again a line says how many went missing. On the spliced
// and the filtered path.
func TestStderrNotReadDoesNotStall(t *testing.T) {
	t.Parallel()
	const conns = 6000 // more lines than the pipe (64 KiB) and the held-back log (1 MiB) take
	for _, path := range []struct {
		name string
		args []string
	}{
		{"spliced", []string{"--dump", "none"}},
		{"plugin", []string{"--dump", "none", "--plugin", "../../host/plugin/testdata/noop.wasm"}},
	} {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			p, r, head, addr := startStderrUnread(t, path.args...)
			echoMany(t, addr, conns)
			// Read stderr again: what was held back arrives, with the count
			// of what was not; the exit writes out the rest.
			r.SetReadDeadline(time.Time{})
			copied := make(chan struct{})
			go func() { io.Copy(p.stderr, r); close(copied) }()
			p.stderr.wait(t, `msg="log output dropped"`)
			p.cmd.Process.Signal(syscall.SIGINT)
			if code := p.exitCode(t); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
			}
			<-copied // EOF: the tunnel has exited, its stderr is all here
			text := string(head) + p.stderr.String()
			closed := strings.Count(text, `msg="connection closed"`)
			dropped := 0
			for _, d := range regexp.MustCompile(`msg="log output dropped" writes=(\d+) `).FindAllStringSubmatch(text, -1) {
				n, _ := strconv.Atoi(d[1])
				dropped += n
			}
			if dropped == 0 || closed+dropped != conns {
				t.Errorf("%d connections: %d close lines on stderr and %d reported dropped, want them to add up, some dropped", conns, closed, dropped)
			}
		})
	}
}

// TestStdoutClosedDoesNotKill: the reader of the traffic dump goes away
// (`tunnel … | head`). A Go program dies of SIGPIPE on a write to a closed
// stdout, which cut every open connection mid-transfer; now the dump stops,
// the log says so once, and every byte is still forwarded.
func TestStdoutClosedDoesNotKill(t *testing.T) {
	t.Parallel()
	target := echoServer(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(tunnelBin, "--from", "127.0.0.1:0", "--to", target, "--dump", "hex"), stderr: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = w, p.stderr
	p.start(t)
	w.Close()
	r.Close() // nobody reads the dump: its first write gets EPIPE
	addr := p.stderr.wait(t, `msg=listening .*addr=(127\.0\.0\.1:\d+)`)[1]
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	want := sha256.Sum256(payload)
	for i := range 3 {
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(cliTimeout))
		go func() { c.Write(payload); c.CloseWrite() }()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || sha256.Sum256(got) != want {
			t.Fatalf("connection %d: %d bytes back (sha256 match %v), %v; the tunnel exited: %v; stderr:\n%s", i+1, len(got), sha256.Sum256(got) == want, err, p.exitedWithin(0), p.stderr)
		}
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d (%v); stderr:\n%s", code, p.err, p.stderr)
	}
	if n := strings.Count(p.stderr.String(), `msg="stdout closed: the traffic dump and plugin output stop here; forwarding goes on"`); n != 1 {
		t.Errorf("%d warnings about the closed stdout, want 1; stderr:\n%s", n, p.stderr)
	}
}

// startStderrUnread starts the plain mode toward an echo server with its
// stderr a pipe that the test reads up to the listening line and then no
// more; it returns the pipe's read end, what was read, and the address.
func startStderrUnread(t *testing.T, args ...string) (p *proc, r *os.File, head []byte, addr string) {
	t.Helper()
	target := echoServer(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p = &proc{cmd: exec.Command(tunnelBin, append([]string{"--from", "127.0.0.1:0", "--to", target}, args...)...), stdout: newDiscard(), stderr: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, w
	p.start(t)
	w.Close()
	rx := regexp.MustCompile(`msg=listening .*addr=(127\.0\.0\.1:\d+)`)
	r.SetReadDeadline(time.Now().Add(cliTimeout))
	var m [][]byte
	for m == nil {
		buf := make([]byte, 512)
		n, err := r.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			t.Fatalf("reading the tunnel's stderr: %v; so far:\n%s", err, head)
		}
		m = rx.FindSubmatch(head)
	}
	return p, r, head, string(m[1])
}

// echoMany makes n connections to addr one after the other, each echoing
// a word; it fails the test at the first that does not come back.
func echoMany(t *testing.T, addr string, n int) {
	t.Helper()
	for i := range n {
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		msg := []byte("hello")
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("connection %d of %d: write: %v (stderr unread: the tunnel stalled on its log?)", i+1, n, err)
		}
		c.CloseWrite()
		if got, err := io.ReadAll(c); string(got) != "hello" || err != nil {
			t.Fatalf("connection %d of %d: echo %q, %v (stderr unread: the tunnel stalled on its log?)", i+1, n, got, err)
		}
		c.Close()
	}
}

// TestExitWhileStderrBlocked: teardown while the log's write is blocked.
// stderr is never read again once the pipe is full, so the log's last
// lines can never be written; SIGINT must still end the process within
// grace + 1 s (the wait for stderr is bounded), not hang on the write.
func TestExitWhileStderrBlocked(t *testing.T) {
	t.Parallel()
	p, _, _, addr := startStderrUnread(t, "--dump", "none", "--grace", "1s")
	echoMany(t, addr, 600) // about 140 KB of close lines: more than the pipe holds
	p.cmd.Process.Signal(syscall.SIGINT)
	// grace + 1 s, and a second more for a loaded machine.
	if !p.exitedWithin(3 * time.Second) {
		t.Fatal("the tunnel did not exit within 3 s of SIGINT with its stderr blocked")
	}
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestPlainSIGHUPIgnored: SIGHUP is the reload signal, and a user sends it
// to every tunnel alike. The plain mode has nothing to reload: without a
// handler the signal's default action killed it and every open connection
// (exit 129); now it is logged and the connection carries on.
func TestPlainSIGHUPIgnored(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "none")
	c := dial(t, addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(cliTimeout))
	roundTrip := func(b string) {
		t.Helper()
		got := make([]byte, len(b))
		if _, err := c.Write([]byte(b)); err != nil {
			t.Fatalf("write %q: %v; stderr:\n%s", b, err, p.stderr)
		}
		if _, err := io.ReadFull(c, got); err != nil || string(got) != b {
			t.Fatalf("read %q, %v; want %q; stderr:\n%s", got, err, b, p.stderr)
		}
	}
	roundTrip("before")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.stderr.wait(t, `msg="SIGHUP ignored: the plain mode has no configuration to reload`)
	roundTrip("after")
	// Closed first: an open connection would hold the exit for the grace.
	c.Close()
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr)
	}
}
