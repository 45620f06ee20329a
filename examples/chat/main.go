// Command chat is a multi-client chat server: every line a client sends is
// relayed to all the other clients as "[ip:port] text", where ip:port is the
// sender as the server sees it.
//
//	go run ./examples/chat -listen 127.0.0.1:3333
//	nc 127.0.0.1 3333     # in three terminals; type lines in each
//
// Behind the tunnel the server sees the tunnel's side of each connection,
// so the ip:port in the messages is the tunnel's, one per client.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tunnelwasm/tunnel/examples/internal/serve"
)

// Limits that keep one client from costing the server unbounded memory or
// stalling the room.
const (
	// MaxLine is the longest line accepted; a longer one disconnects its sender.
	MaxLine = 4096
	// Backlog is how many messages may wait for a client that reads slower
	// than the others write. When it is full the sender waits (so a fast
	// talker slows down to the pace of its readers) for at most
	// Room.SlowTimeout, then the slow client is disconnected.
	Backlog = 256
	// DefaultSlowTimeout is Room.SlowTimeout unless set.
	DefaultSlowTimeout = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it serves until ctx is done and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:3333", "`address` to listen on")
	if code, ok := serve.Parse(fs, args); !ok {
		return code
	}
	ln, code := serve.Listen("chat", *listen, stdout, stderr)
	if ln == nil {
		return code
	}
	if err := NewRoom(stdout).Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "chat: %v\n", err)
		return 1
	}
	return 0
}

// Room relays lines between the clients connected to it.
type Room struct {
	// SlowTimeout is how long a message waits for room in a slow
	// client's backlog before that client is disconnected.
	SlowTimeout time.Duration

	log     io.Writer
	logMu   sync.Mutex
	mu      sync.Mutex
	members map[*member]struct{}
}

type member struct {
	name string        // ip:port of the client
	conn net.Conn      // closed to disconnect a slow client
	out  chan string   // messages waiting to be written
	gone chan struct{} // closed when the client has left: stop writing
}

// NewRoom returns an empty room that logs joins, relays and leaves to log.
func NewRoom(log io.Writer) *Room {
	return &Room{SlowTimeout: DefaultSlowTimeout, log: log, members: map[*member]struct{}{}}
}

// Serve runs the room on every connection accepted from ln until ctx is done.
func (r *Room) Serve(ctx context.Context, ln net.Listener) error {
	return serve.Conns(ctx, ln, r.handle)
}

func (r *Room) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.log, format+"\n", args...)
}

// handle is one client's life: join, relay its lines, leave.
func (r *Room) handle(c net.Conn) {
	m := &member{name: c.RemoteAddr().String(), conn: c, out: make(chan string, Backlog), gone: make(chan struct{})}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for {
			select {
			case msg := <-m.out:
				if _, err := io.WriteString(c, msg); err != nil {
					c.Close() // ends the reader below
					return
				}
			case <-m.gone:
				return
			}
		}
	}()
	r.mu.Lock()
	r.members[m] = struct{}{}
	online := len(r.members)
	r.mu.Unlock()
	r.logf("[%s] joined (%d online)", m.name, online)

	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 512), MaxLine)
	for sc.Scan() {
		text := strings.TrimSuffix(sc.Text(), "\r")
		n := r.broadcast(m, fmt.Sprintf("[%s] %s\n", m.name, text))
		r.logf("[%s] %q relayed to %d clients", m.name, short(text), n)
	}
	why := "left"
	if err := sc.Err(); err != nil {
		why = "disconnected: " + err.Error()
	}

	r.mu.Lock()
	delete(r.members, m)
	online = len(r.members)
	r.mu.Unlock()
	// A client that stopped sending may also have stopped reading: give a
	// write in progress SlowTimeout to finish, not forever.
	c.SetWriteDeadline(time.Now().Add(r.SlowTimeout))
	close(m.gone)
	<-wrote
	r.logf("[%s] %s (%d online)", m.name, why, online)
}

// broadcast queues msg for every member but from and returns how many got
// it. When a member's backlog is full it waits up to SlowTimeout for room,
// then disconnects that member.
func (r *Room) broadcast(from *member, msg string) int {
	r.mu.Lock()
	others := make([]*member, 0, len(r.members))
	for o := range r.members {
		if o != from {
			others = append(others, o)
		}
	}
	r.mu.Unlock()
	n := 0
	for _, o := range others {
		select {
		case o.out <- msg:
			n++
			continue
		case <-o.gone:
			continue
		default:
		}
		t := time.NewTimer(r.SlowTimeout)
		select {
		case o.out <- msg:
			n++
		case <-o.gone:
		case <-t.C:
			r.logf("[%s] too slow (%d messages waiting for %v); disconnecting", o.name, len(o.out), r.SlowTimeout)
			o.conn.Close()
		}
		t.Stop()
	}
	return n
}

// short cuts long text for the log.
func short(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
