// Command speakfirst is a server that talks before the client does: it
// sends "Welcome!\n" as soon as it accepts, then echoes. Protocols like SMTP,
// FTP and SSH work this way, and a tunnel that waits for the client's first
// byte before reading from the server hangs on them.
//
//	go run ./examples/speakfirst -listen 127.0.0.1:8080
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

// Welcome is the first thing every client receives.
const Welcome = "Welcome!\n"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it serves until ctx is done and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("speakfirst", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to listen on")
	if code, ok := serve.Parse(fs, args); !ok {
		return code
	}
	ln, code := serve.Listen("speakfirst", *listen, stdout, stderr)
	if ln == nil {
		return code
	}
	if err := Serve(ctx, ln, stdout); err != nil {
		fmt.Fprintf(stderr, "speakfirst: %v\n", err)
		return 1
	}
	return 0
}

// Serve handles every connection accepted from ln with Greet until ctx is
// done, logging each one to log.
func Serve(ctx context.Context, ln net.Listener, log io.Writer) error {
	return serve.Conns(ctx, ln, func(c net.Conn) {
		fmt.Fprintf(log, "[%s] connected, sending the welcome\n", c.RemoteAddr())
		n, err := Greet(c)
		fmt.Fprintf(log, "[%s] done after echoing %d bytes (%v)\n", c.RemoteAddr(), n, errText(err))
	})
}

// Greet writes Welcome to c without waiting for anything, then echoes
// until the client half-closes, and half-closes in turn.
func Greet(c net.Conn) (int64, error) {
	if _, err := io.WriteString(c, Welcome); err != nil {
		return 0, err
	}
	n, err := io.Copy(c, c)
	if err != nil {
		return n, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return n, tc.CloseWrite()
	}
	return n, nil
}

func errText(err error) string {
	if err == nil {
		return "clean end"
	}
	return err.Error()
}
