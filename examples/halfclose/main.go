// Command halfclose shows TCP's half-close: a client sends N bytes, shuts
// down its write side (shutdown(SHUT_WR), CloseWrite in Go) and keeps
// reading; the server reads until that end of stream, then answers with 2N
// bytes and closes. The answer only comes because the server saw EOF while
// the other direction stayed open, so it checks that a tunnel forwards the
// half-close instead of closing the whole connection.
//
//	go run ./examples/halfclose -mode server -listen 127.0.0.1:8080
//	go run ./examples/halfclose -mode client -addr 127.0.0.1:8080 -n 23000
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tunnelwasm/tunnel/examples/internal/serve"
)

// The bytes each side sends: its phrase repeated and cut to length, as in
// the course material this example comes from (23 bytes a phrase: the
// default 23,000 bytes are the client phrase 1,000 times).
const (
	ClientPhrase = "Hello from the client! "
	ServerPhrase = "Hello from the server! "
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("halfclose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "", "server or client")
	listen := fs.String("listen", "127.0.0.1:8080", "server: `address` to listen on")
	addr := fs.String("addr", "127.0.0.1:8080", "client: `address` to connect to (the server, or a tunnel in front of it)")
	n := fs.Int("n", 23000, "client: how many bytes to send")
	timeout := fs.Duration("timeout", 30*time.Second, "client: give up after this long")
	if code, ok := serve.Parse(fs, args); !ok {
		return code
	}
	switch *mode {
	case "server":
		ln, code := serve.Listen("halfclose", *listen, stdout, stderr)
		if ln == nil {
			return code
		}
		if err := Server(ctx, ln, stdout); err != nil {
			fmt.Fprintf(stderr, "halfclose: %v\n", err)
			return 1
		}
		return 0
	case "client":
		if *n < 0 {
			fmt.Fprintf(stderr, "halfclose: -n %d: want 0 or more bytes\n", *n)
			return 2
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		res, err := Client(ctx, *addr, *n)
		fmt.Fprintf(stdout, "sent %d bytes, then half-closed; received %d bytes (want %d), sha256 %s\n",
			res.Sent, res.Received, 2*res.Sent, res.SHA256)
		if err != nil {
			fmt.Fprintf(stderr, "halfclose: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "OK: the server saw the end of the request and the whole answer came back")
		return 0
	}
	fmt.Fprintf(stderr, "halfclose: -mode %q: want server or client\n", *mode)
	fs.Usage()
	return 2
}

// Payload returns a reader of n bytes: phrase repeated, the last one cut
// short. It is generated as it is read, so a client that sends a gigabyte
// does not make the server allocate two.
func Payload(phrase string, n int64) io.Reader {
	return io.LimitReader(&repeat{phrase: phrase}, n)
}

type repeat struct {
	phrase string
	off    int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.phrase[r.off:])
		n += c
		r.off = (r.off + c) % len(r.phrase)
	}
	return n, nil
}

// Server answers every connection accepted from ln until ctx is done: it
// reads to EOF, counting, then writes twice as many bytes of ServerPhrase
// and closes.
func Server(ctx context.Context, ln net.Listener, log io.Writer) error {
	return serve.Conns(ctx, ln, func(c net.Conn) {
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			fmt.Fprintf(log, "[%s] read %d bytes, then: %v\n", c.RemoteAddr(), n, err)
			return
		}
		fmt.Fprintf(log, "[%s] end of stream after %d bytes; answering %d bytes\n", c.RemoteAddr(), n, 2*n)
		if _, err := io.Copy(c, Payload(ServerPhrase, 2*n)); err != nil {
			fmt.Fprintf(log, "[%s] answer: %v\n", c.RemoteAddr(), err)
		}
	})
}

// Result is what the client did.
type Result struct {
	Sent     int    // bytes sent before the half-close
	Received int    // bytes read until the server closed
	SHA256   string // of the bytes received, hex
}

// Client connects to addr, sends n bytes of ClientPhrase, half-closes and
// reads until the server closes. It fails unless exactly the 2n bytes the
// server sends (Payload(ServerPhrase, 2n)) arrived.
func Client(ctx context.Context, addr string, n int) (Result, error) {
	var res Result
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, err
	}
	c := conn.(*net.TCPConn)
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := io.Copy(c, Payload(ClientPhrase, int64(n))); err != nil {
		return res, fmt.Errorf("send: %w", err)
	}
	res.Sent = n
	if err := c.CloseWrite(); err != nil {
		return res, fmt.Errorf("half-close: %w", err)
	}
	h := sha256.New()
	got, err := io.Copy(h, c)
	res.Received = int(got)
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	if err != nil {
		return res, fmt.Errorf("receive: %w", err)
	}
	want := sha256.New()
	io.Copy(want, Payload(ServerPhrase, 2*int64(n)))
	if res.Received != 2*n || res.SHA256 != hex.EncodeToString(want.Sum(nil)) {
		return res, errors.New("the answer is not the expected 2N bytes")
	}
	return res, nil
}
