// Package serve is the accept loop shared by the example servers: one
// goroutine per connection, and a clean end when the context is done.
package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Conns runs handle for every connection accepted on ln, each in its own
// goroutine, until ctx is done. Then it closes ln and every connection still
// open, waits for the handlers to return, and returns nil. Running out of
// file descriptors is waited out; any other accept error is returned after
// the same clean-up.
// handle owns its connection but need not close it.
func Conns(ctx context.Context, ln net.Listener, handle func(c net.Conn)) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	var backoff time.Duration
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil && retryable(aerr) {
				// Out of file descriptors, or a client gone before it was
				// accepted: wait a little and go on, like net/http.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
				}
			}
			if ctx.Err() == nil && !errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("accept on %s: %w", ln.Addr(), aerr)
			}
			break
		}
		backoff = 0
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			handle(c)
		}()
	}
	ln.Close()
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	return err
}

// retryable reports whether an accept error is worth retrying.
func retryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// Listen listens on addr and prints "NAME: listening on ADDR" to stdout,
// which is how a user (or a test) learns the port of ":0". When it fails it
// prints the error to stderr and returns the exit status 1.
func Listen(name, addr string, stdout, stderr io.Writer) (net.Listener, int) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot listen on %s: %v\n", name, addr, err)
		return nil, 1
	}
	fmt.Fprintf(stdout, "%s: listening on %s\n", name, ln.Addr())
	return ln, 0
}

// Parse parses args into fs, printing errors and usage to fs's output. It
// returns false when the program should exit with status code.
func Parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, false
	}
	return 0, true
}
