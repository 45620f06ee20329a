package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// forwardingOutputs sets up the outputs of a mode that forwards (plain,
// config, demo): stderr behind the log's buffer (logOutput), with fs's
// usage going through it too so that it stays after the error it follows,
// the logger at level on it, and stdout kept from killing the process or
// stalling on a reader that went away. done writes out what stderr holds.
func forwardingOutputs(fs *flag.FlagSet, stdout, stderr io.Writer, level slog.Level) (io.Writer, io.Writer, *slog.Logger, func()) {
	stderr, done := logOutput(stderr)
	fs.SetOutput(stderr)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	keepOnBrokenPipe()
	return guardStdout(stdout, logger), stderr, logger, done
}

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
	failed atomic.Bool // a write failed otherwise (ENOSPC on /dev/full, EIO): said once
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
	if err != nil && g.failed.CompareAndSwap(false, true) {
		// The dump's writers drop the error: without this line the
		// traffic dump would be lost without a word.
		g.logger.Error("stdout: writing the traffic dump or plugin output failed; what fails to be written is lost (said once)", "err", err)
	}
	return n, err
}
