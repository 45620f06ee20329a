package demoredis

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCommands(t *testing.T) {
	var s Server
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"ping", "+PONG\r\n"},
		{"PING hi", "$2\r\nhi\r\n"},
		{"GET a", "$-1\r\n"},
		{"SET a 1", "+OK\r\n"},
		{"SET b 22", "+OK\r\n"},
		{"GET a", "$1\r\n1\r\n"},
		{"KEYS", "*2\r\n$1\r\na\r\n$1\r\nb\r\n"},
		{"DEL a c", ":1\r\n"},
		{"ECHO x", "$1\r\nx\r\n"},
		{"SET a", "-ERR wrong number of arguments for 'set' command\r\n"},
		{"HGET a b", "-ERR unknown command 'HGET'\r\n"},
		{"FLUSHALL", "+OK\r\n"},
		{"GET b", "$-1\r\n"},
	} {
		got, quit := s.Do(strings.Fields(c.in))
		if got != c.want || quit {
			t.Errorf("%q: %q (quit %v), want %q", c.in, got, quit, c.want)
		}
	}
	if got, quit := s.Do([]string{"QUIT"}); got != "+OK\r\n" || !quit {
		t.Errorf("QUIT: %q, quit %v", got, quit)
	}
}

// TestServe: commands over a socket, QUIT closes the connection, Close
// ends the others.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var s Server
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "SET k v\r\n\r\nGET k\nQUIT\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if want := "+OK\r\n$1\r\nv\r\n+OK\r\n"; string(got) != want || err != nil {
		t.Errorf("got %q (%v), want %q", got, err, want)
	}

	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(idle, "PING\r\n")
	if line, err := bufio.NewReader(idle).ReadString('\n'); line != "+PONG\r\n" || err != nil {
		t.Fatalf("PING: %q, %v", line, err)
	}
	ln.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	s.Close()
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("after Close the connection is still open: %d, %v", n, err)
	}
}
