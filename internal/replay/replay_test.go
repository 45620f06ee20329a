package replay_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/internal/replay"
)

// record captures one echo session through chain and returns the file.
func record(t *testing.T, chain []host.Link, session func(c io.ReadWriter)) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.pcapng")
	recordWith(t, file, chain, func(c net.Conn) { io.Copy(c, c) }, func(c io.ReadWriter, _ *capture.Writer) { session(c) })
	return file
}

// recordWith captures one session through chain into file (and the files
// a rotation starts): serve answers the connection before its half-close
// (its end is sent after), session runs the client, with the Writer; then
// the client half-closes and reads to the end.
func recordWith(t *testing.T, file string, chain []host.Link, serve func(c net.Conn), session func(c io.ReadWriter, w *capture.Writer)) {
	t.Helper()
	recordAt(t, "127.0.0.1:0", "127.0.0.1:0", file, chain, serve, func(c *net.TCPConn, w *capture.Writer) {
		session(c, w)
		c.CloseWrite()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
	})
}

// recordAt captures one session through chain into file, on a route from
// listen to a server on target: serve answers the connection (its end is
// sent after), session runs the client and ends its side as it will.
func recordAt(t *testing.T, listen, target, file string, chain []host.Link, serve func(c net.Conn), session func(c *net.TCPConn, w *capture.Writer)) {
	t.Helper()
	w, err := capture.Create(capture.Options{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	first, last := capture.Links(w)
	ln, err := net.Listen("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
		c.(*net.TCPConn).CloseWrite()
	}()
	p := &host.Proxy{}
	defer p.Close()
	if err := p.Apply([]host.Route{{Name: "r", Listen: listen, Target: ln.Addr().String(), Chain: append(append([]host.Link{first}, chain...), last)}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr("r").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	session(c.(*net.TCPConn), w)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func say(t *testing.T, c io.ReadWriter, msg, want string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("sent %q, got %q, %v", msg, got, err)
	}
}

// block drops the chunks holding "BAD".
var block = host.Link{Name: "block", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
	if dir == host.ClientToServer && bytes.Contains(b, []byte("BAD")) {
		return nil, nil
	}
	return b, nil
})}

// TestReadJoinsLegs: Read joins a capture's two legs into one connection
// with the client's bytes as sent and the server's as sent, in order.
func TestReadJoinsLegs(t *testing.T) {
	t.Parallel()
	big := make([]byte, 100<<10)
	rand.NewChaCha8([32]byte{1}).Read(big)
	file := record(t, []host.Link{block}, func(c io.ReadWriter) {
		say(t, c, "one\n", "one\n")
		say(t, c, string(big), string(big))
		// Last: a chunk that also held the next bytes would drop them.
		if _, err := io.WriteString(c, "BAD\n"); err != nil {
			t.Fatal(err)
		}
	})
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conns, err := replay.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 {
		t.Fatalf("%d conns", len(conns))
	}
	c := conns[0]
	var client, server []byte
	var order []string
	for _, ch := range c.Chunks {
		if ch.Dir == host.ClientToServer {
			client = append(client, ch.Data...)
		} else {
			server = append(server, ch.Data...)
		}
		order = append(order, ch.Dir.String())
	}
	if want := "one\n" + string(big) + "BAD\n"; string(client) != want {
		t.Errorf("client bytes: %d, want %d", len(client), len(want))
	}
	if want := "one\n" + string(big); string(server) != want {
		t.Errorf("server bytes: %d, want %d", len(server), len(want))
	}
	if order[0] != "client -> server" || order[1] != "server -> client" || order[2] != "client -> server" {
		t.Errorf("order %q", order)
	}
	if c.Ended != [2]bool{true, true} {
		t.Errorf("ended %v", c.Ended)
	}

	rep, err := replay.Run(context.Background(), conns, replay.Options{Chain: []host.Link{block}})
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, s := range rep.Conns[0].Steps {
		if len(s.In) < 10 {
			verdicts = append(verdicts, s.Dir.String()+" "+strings.TrimSpace(string(s.In))+": "+s.Verdict())
		}
	}
	want := []string{"client -> server one: forwarded", "server -> client one: forwarded", "client -> server BAD: dropped or held",
		"client -> server : half-closed", "server -> client : half-closed"}
	if strings.Join(verdicts, "\n") != strings.Join(want, "\n") || rep.Failed() {
		t.Errorf("verdicts %q (failed %v), want %q", verdicts, rep.Failed(), want)
	}
}

// A capture whose client leg is TLS as it crossed the wire (a route with
// tls { key_log }) holds no plaintext the chain saw: Read refuses it,
// saying why and what to do.
func TestReadRefusesWireTLS(t *testing.T) {
	file := filepath.Join(t.TempDir(), "w.pcapng")
	w, err := capture.Create(capture.Options{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer b.Close()
	info := &host.ConnInfo{ID: 1, Route: "r", Client: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5555}, Listen: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}}
	tapped := capture.WireTap(w)(info, a)
	go b.Write([]byte("\x16\x03\x01\x00\x05hello"))
	buf := make([]byte, 10)
	if _, err := io.ReadFull(tapped, buf); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = replay.Read(f)
	if err == nil || !strings.Contains(err.Error(), "the client leg of the connection from 192.0.2.1:5555 is TLS as it crossed the wire (a capture of a route with tls { key_log })") {
		t.Fatalf("Read: %v, want the refusal naming the connection", err)
	}
}

// TestReadAcrossRotation: a file started while a connection was open (a
// rotation) has no handshake for it, and its first bytes may be the
// server's (a reply that was pending). Read once took their sender for the
// client, so the replay fed the server's bytes to the plugins as the
// client's; it now takes the side with the kernel-picked port. The file
// before the rotation ends without FINs: its replay is Cut, not an error.
func TestReadAcrossRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	push, waited := make(chan struct{}), make(chan struct{})
	var client string
	// The server answers "wait" later, unasked, then echoes.
	recordWith(t, filepath.Join(dir, "c.pcapng"), nil, func(c net.Conn) {
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			return
		}
		close(waited) // its packets were queued before the tunnel sent them
		<-push
		io.WriteString(c, "pushed\n")
		io.Copy(c, c)
	}, func(c io.ReadWriter, w *capture.Writer) {
		client = c.(net.Conn).LocalAddr().String()
		io.WriteString(c, "wait\n")
		<-waited
		w.Rotate() // "wait" is in the first file
		close(push)
		say(t, c, "", "pushed\n")
		say(t, c, "bye\n", "bye\n")
	})
	read := func(name string) []replay.Conn {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		conns, err := replay.Read(f)
		if err != nil || len(conns) != 1 {
			t.Fatalf("%s: %d conns, %v", name, len(conns), err)
		}
		return conns
	}
	after := read("c-1.pcapng")
	if got := after[0].Client.String(); got != client {
		t.Errorf("after the rotation the client is %s, want %s", got, client)
	}
	if ch := after[0].Chunks; len(ch) == 0 || ch[0].Dir != host.ServerToClient || string(ch[0].Data) != "pushed\n" {
		t.Errorf("after the rotation the chunks are %+v, want the server's push first", ch)
	}
	before := read("c.pcapng")
	rep, err := replay.Run(context.Background(), before, replay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || !rep.Conns[0].Cut {
		t.Errorf("the file before the rotation replays as failed %v (err %q), cut %v; want cut, not failed", rep.Failed(), rep.Conns[0].Err, rep.Conns[0].Cut)
	}
}

// TestReadTruncated: a file cut short in a packet (a full disk) gives the
// connections read so far, and a *TruncatedError.
func TestReadTruncated(t *testing.T) {
	t.Parallel()
	file := record(t, nil, func(c io.ReadWriter) { say(t, c, "one\n", "one\n") })
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	conns, err := replay.Read(bytes.NewReader(b[:len(b)-10]))
	var cut *replay.TruncatedError
	if !errors.As(err, &cut) || len(conns) != 1 {
		t.Fatalf("Read of a file cut short: %d conns, %v; want the connection and a *TruncatedError", len(conns), err)
	}
}

// TestVerdictCounts: the verdicts count bytes in English ("1 byte").
func TestVerdictCounts(t *testing.T) {
	for _, tc := range []struct {
		s    replay.Step
		want string
	}{
		{replay.Step{In: []byte("a"), Forwarded: []byte("a"), Replied: []byte("x")}, "forwarded; replied 1 byte"},
		{replay.Step{In: []byte("a"), Forwarded: []byte("a"), Replied: []byte("xy")}, "forwarded; replied 2 bytes"},
		{replay.Step{End: true, Forwarded: []byte("h")}, "half-closed, after forwarding 1 held byte"},
		{replay.Step{In: []byte("abc"), Forwarded: []byte("ab")}, "forwarded 2 of the bytes, the rest held"},
	} {
		if got := tc.s.Verdict(); got != tc.want {
			t.Errorf("Verdict of %+v = %q, want %q", tc.s, got, tc.want)
		}
	}
}
