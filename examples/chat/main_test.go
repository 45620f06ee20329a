package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/examples/internal/extest"
)

// TestMain fails the package if a goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var line = regexp.MustCompile(`^\[(127\.0\.0\.1:\d+)\] (.*)$`)

// chat connects three clients to addr, waits until the server counts them
// all, has each say one line, and checks that each line reached exactly
// the two others, prefixed with one ip:port per sender. It returns the
// prefix of each sender and each client's own address.
func chat(t *testing.T, addr string, out *extest.Output) (senders, locals []string) {
	t.Helper()
	clients := make([]*net.TCPConn, 3)
	readers := make([]*bufio.Reader, 3)
	for i := range clients {
		clients[i] = extest.Dial(t, addr)
		readers[i] = bufio.NewReader(clients[i])
	}
	out.Wait(t, `\(3 online\)`)
	for i, c := range clients {
		if _, err := fmt.Fprintf(c, "hello from client %d\r\n", i); err != nil {
			t.Fatal(err)
		}
	}
	prefix := map[string]string{} // message -> sender prefix
	for i, r := range readers {
		var got []string
		for range 2 {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("client %d: %v (got %q)", i, err, got)
			}
			m := line.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
			if m == nil {
				t.Fatalf("client %d got %q, want \"[ip:port] text\"", i, l)
			}
			if p, seen := prefix[m[2]]; seen && p != m[1] {
				t.Errorf("%q arrived from %s and from %s", m[2], p, m[1])
			}
			prefix[m[2]] = m[1]
			got = append(got, m[2])
		}
		sort.Strings(got)
		var want []string
		for j := range clients {
			if j != i {
				want = append(want, fmt.Sprintf("hello from client %d", j))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("client %d got %q, want %q", i, got, want)
		}
	}
	distinct := map[string]bool{}
	for i, c := range clients {
		locals = append(locals, c.LocalAddr().String())
		senders = append(senders, prefix[fmt.Sprintf("hello from client %d", i)])
		distinct[senders[i]] = true
	}
	if len(distinct) != 3 {
		t.Errorf("senders' prefixes %q are not distinct", senders)
	}
	// Nobody hears their own line: nothing more is waiting for anyone.
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if l, err := readers[i].ReadString('\n'); err == nil || l != "" {
			t.Errorf("client %d got an extra %q", i, l)
		}
	}
	return senders, locals
}

// TestChatBehindTunnel: three clients through the tunnel each reach the
// two others. The server sees the tunnel's side of each connection, so the
// prefixes are not the clients' own addresses.
func TestChatBehindTunnel(t *testing.T) {
	addr, out := extest.Start(t, run, "-listen", "127.0.0.1:0")
	senders, locals := chat(t, extest.Tunnel(t, addr), out)
	for i := range senders {
		if senders[i] == locals[i] {
			t.Errorf("client %d: prefix %s is its own address, not the tunnel's", i, senders[i])
		}
	}
}

// TestChatDirect: without a tunnel the prefix is the client's own address.
func TestChatDirect(t *testing.T) {
	addr, out := extest.Start(t, run, "-listen", "127.0.0.1:0")
	senders, locals := chat(t, addr, out)
	if fmt.Sprint(senders) != fmt.Sprint(locals) {
		t.Errorf("prefixes %q, want the clients' addresses %q", senders, locals)
	}
	out.Wait(t, `relayed to 2 clients`)
}

// watch is a log writer that signals when a line contains want. It looks
// at each line once, so a busy log costs nothing to watch.
type watch struct {
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watch) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestSlowClientDisconnected: a client that never reads is dropped once
// its backlog is full, and the room goes on for the others.
func TestSlowClientDisconnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := extest.NewOutput()
	tooSlow := &watch{want: "too slow", seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	room := NewRoom(io.MultiWriter(tooSlow, filter{out}))
	room.SlowTimeout = 200 * time.Millisecond
	go func() { done <- room.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	addr := ln.Addr().String()

	slow := extest.Dial(t, addr)
	slow.SetReadBuffer(4096)
	out.Wait(t, `\(1 online\)`)
	talker := extest.Dial(t, addr)
	out.Wait(t, `\(2 online\)`)
	listener := extest.Dial(t, addr)
	out.Wait(t, `\(3 online\)`)
	go io.Copy(io.Discard, listener)
	// The slow client's socket buffers fill, then its Backlog; the talker
	// waits SlowTimeout, then the slow client is disconnected. The
	// listener, which reads, keeps up because the talker waits for it.
	msg := strings.Repeat("x", 1000) + "\n"
	for sent := 0; ; sent++ {
		select {
		case <-tooSlow.seen:
		default:
			if _, err := io.WriteString(talker, msg); err != nil {
				t.Fatalf("talker blocked after %d messages: %v", sent, err)
			}
			continue
		}
		break
	}
	out.Wait(t, `\[`+regexp.QuoteMeta(slow.LocalAddr().String())+`\] disconnected: .*\(2 online\)`)
	if n := strings.Count(out.String(), "too slow"); n != 1 {
		t.Errorf("%d clients found too slow, want only the one that does not read:\n%s", n, out)
	}
	// The others carry on.
	io.WriteString(talker, "still here\n")
	out.Wait(t, `"still here" relayed to 1 clients`)
}

// filter passes on every log line but the relays of the flood.
type filter struct{ w io.Writer }

func (f filter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), `"xxx`) {
		return len(p), nil
	}
	return f.w.Write(p)
}

// smallBuffers accepts connections with a 4 KiB send buffer, so that a
// client that does not read blocks the server's writes quickly.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}

// TestLeaverThatDoesNotRead: a client that half-closes while the server is
// stuck writing to it (it never reads) is let go within SlowTimeout.
func TestLeaverThatDoesNotRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := extest.NewOutput()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	room := NewRoom(out)
	room.SlowTimeout = 200 * time.Millisecond
	go func() { done <- room.Serve(ctx, smallBuffers{ln}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	addr := ln.Addr().String()
	leaver := extest.Dial(t, addr)
	leaver.SetReadBuffer(4096)
	out.Wait(t, `\(1 online\)`)
	talker := extest.Dial(t, addr)
	out.Wait(t, `\(2 online\)`)
	// More than the socket buffers hold, less than the Backlog: the
	// server's writer toward the leaver is stuck, nobody is too slow yet.
	msg := strings.Repeat("y", 1000) + "\n"
	for range 100 {
		if _, err := io.WriteString(talker, msg); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(talker, "last\n")
	out.Wait(t, `"last" relayed to 1 clients`)
	leaver.CloseWrite()
	out.Wait(t, `\[`+regexp.QuoteMeta(leaver.LocalAddr().String())+`\] left \(1 online\)`)
}
