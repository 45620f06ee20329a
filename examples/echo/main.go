// Command echo is a TCP echo server: every byte a client sends comes back.
//
//	go run ./examples/echo -listen 127.0.0.1:8080
//
// Try it behind the tunnel (see examples/README.md):
//
//	go run ./cmd/tunnel --from 127.0.0.1:9090 --to 127.0.0.1:8080
//	nc 127.0.0.1 9090
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/tunnelwasm/tunnel/examples/internal/serve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it serves until ctx is done and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to listen on")
	if code, ok := serve.Parse(fs, args); !ok {
		return code
	}
	ln, code := serve.Listen("echo", *listen, stdout, stderr)
	if ln == nil {
		return code
	}
	if err := Serve(ctx, ln, stdout); err != nil {
		fmt.Fprintf(stderr, "echo: %v\n", err)
		return 1
	}
	return 0
}

// Serve echoes on every connection accepted from ln until ctx is done, and
// logs each connection's byte count to log.
func Serve(ctx context.Context, ln net.Listener, log io.Writer) error {
	return serve.Conns(ctx, ln, func(c net.Conn) {
		n, err := Echo(c)
		if err != nil {
			fmt.Fprintf(log, "[%s] echoed %d bytes, then: %v\n", c.RemoteAddr(), n, err)
			return
		}
		fmt.Fprintf(log, "[%s] echoed %d bytes\n", c.RemoteAddr(), n)
	})
}

// Echo copies everything c sends back to it. When the client half-closes,
// Echo half-closes too, so a client that reads to EOF gets all its bytes.
func Echo(c net.Conn) (int64, error) {
	n, err := io.Copy(c, c)
	if err != nil {
		return n, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return n, tc.CloseWrite()
	}
	return n, nil
}
