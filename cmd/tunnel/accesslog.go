package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/tunnelwasm/tunnel/internal/logsink"
)

// The log on stderr and the --access-log file are written through a
// logsink.Writer: a connection's end is logged on the goroutine that
// forwarded it, often the event loop of every connection of its route,
// and a write(2) there would both cost a system call per connection and,
// when the output stalls (a pipe nobody reads, a terminal paused with
// Ctrl-S, a stuck disk), stall every connection of the loop. The writer
// keeps lines in memory, writes them in batches, and drops (and then
// reports) what does not fit.
const (
	// stderrDelay is how late a line may reach stderr; stderrMax is what
	// stderr may hold back before lines are dropped (about 4,000 lines).
	stderrDelay = 10 * time.Millisecond
	stderrMax   = 1 << 20
	// accessLogFlush is how often the access log's lines are written to
	// its file (a crash loses at most that much, as nginx's access_log
	// buffer= does); accessLogMax is what it may hold back (about 15,000
	// lines, written at once from half of it).
	accessLogFlush = 200 * time.Millisecond
	accessLogMax   = 4 << 20
	// closeWait bounds how long exit waits for an output to take the last
	// lines: an output that never does must not keep the process (the
	// access log's, then stderr's: stopWaitAfterGrace leaves room for both).
	closeWait = 100 * time.Millisecond
)

// logOutput puts stderr behind a logsink.Writer. Everything the command
// writes to stderr from then on goes through it, so that its own messages
// and the log's lines stay in order; done writes out what is left.
func logOutput(stderr io.Writer) (io.Writer, func()) {
	w := logsink.New(stderr, logsink.Options{Delay: stderrDelay, Max: stderrMax, Name: "stderr"})
	return w, func() { w.Close(closeWait) }
}

// accessLog is the --access-log file behind a logsink.Writer.
type accessLog struct {
	*logsink.Writer
	f *os.File
}

// openAccessLog opens the file at path for appending; lines that the file
// does not take in time are reported through logger, not in the file, whose
// readers expect JSON.
func openAccessLog(path string, logger *slog.Logger) (*accessLog, error) {
	// O_NONBLOCK: the open of a named pipe nobody reads would otherwise
	// block, and the tunnel with it, forever (ENXIO instead).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NONBLOCK, 0o644)
	if errors.Is(err, syscall.ENXIO) {
		return nil, fmt.Errorf("%s is a named pipe (FIFO) that nobody reads: start its reader first", path)
	}
	if err != nil {
		return nil, err
	}
	dropped := func(lines, bytes int) {
		logger.Warn("access log lines dropped", "lines", lines, "bytes", bytes, "file", path, "why", "the file did not take bytes as fast as they came")
	}
	failed := func(err error, bytes int) {
		logger.Warn("access log lines lost", "bytes", bytes, "file", path, "err", err, "why", "writing the file failed; said again every "+logsink.FailReport.String()+" while it fails")
	}
	return &accessLog{logsink.New(f, logsink.Options{Delay: accessLogFlush, Max: accessLogMax, Dropped: dropped, Failed: failed}), f}, nil
}

// Close writes out what is buffered and closes the file.
func (a *accessLog) Close() error {
	a.Writer.Close(closeWait)
	return a.f.Close()
}
