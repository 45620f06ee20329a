package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// keepOnBrokenPipe makes a write to a closed pipe on stdout or stderr
// fail with EPIPE instead of killing the process. By default a Go program
// dies of SIGPIPE when its stdout's reader goes away (`tunnel … | head`,
// a log collector restarting): for the tunnel that cut every open
// connection, bytes in flight lost, over a copy of the traffic the user
// only watched. Asking for SIGPIPE (and never reading it) is how the
// runtime is told so; unlike ignoring it, it is not inherited by child
// processes. Only the modes that forward call it: `tunnel plugins | head`
// still ends as a filter should.
func keepOnBrokenPipe() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
}

// brokenPipeGuard is stdout for the traffic dump and the plugins' output:
// when its reader has gone (EPIPE), it says so once in the log and drops
// what follows, and forwarding goes on.
type brokenPipeGuard struct {
	w      io.Writer
	logger *slog.Logger
	broken atomic.Bool
}

func guardStdout(w io.Writer, logger *slog.Logger) io.Writer {
	return &brokenPipeGuard{w: w, logger: logger}
}

func (g *brokenPipeGuard) Write(p []byte) (int, error) {
	if g.broken.Load() {
		return len(p), nil
	}
	n, err := g.w.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		if g.broken.CompareAndSwap(false, true) {
			g.logger.Warn("stdout closed: the traffic dump and plugin output stop here; forwarding goes on", "err", err)
		}
		return len(p), nil
	}
	return n, err
}
