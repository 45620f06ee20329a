package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/internal/config"
)

// plainCapture puts the capture links of --capture FILE (opts.Path) around route's
// chain (nothing when path is empty) and starts a new file on each SIGHUP
// until ctx ends. Without a capture, a SIGHUP is logged and ignored: the
// plain mode has nothing to reload, and the signal's default action would
// kill the process and every connection with it. The returned function
// closes the file: call it after the proxy is shut down. hup is subscribed
// to SIGHUP by the caller (see notifyHUP).
func plainCapture(ctx context.Context, opts capture.Options, route *host.Route, hup chan os.Signal) (func(), error) {
	path, logger := opts.Path, opts.Logger
	var w *capture.Writer
	if path != "" {
		var err error
		if w, err = capture.Create(opts); err != nil {
			return nil, fmt.Errorf("--capture: %w", err)
		}
		first, last := capture.Links(w)
		route.Chain = append(append([]host.Link{first}, route.Chain...), last)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				if w == nil {
					logger.Info("SIGHUP ignored: the plain mode has no configuration to reload (see --config) and no capture file to start anew (see --capture)")
					continue
				}
				if closed := w.Rotate(); closed != "" {
					logger.Info("capture: SIGHUP: closed the file; the next packet starts a new one", "file", closed)
				} else {
					logger.Info("capture: SIGHUP: no file open; the next packet starts one", "path", path)
				}
			case <-ctx.Done():
				return
			case <-quit: // the tunnel ended on its own (it could not listen)
				return
			}
		}
	}()
	return func() {
		// Ignored, not back to its default action (which kills): the
		// process is draining or exiting, and a SIGHUP now must not cut
		// that short.
		signal.Ignore(syscall.SIGHUP)
		signal.Stop(hup)
		close(quit)
		<-done
		if w == nil {
			return
		}
		if err := w.Close(); err != nil {
			logger.Error("capture: closing", "path", path, "err", err)
		}
	}, nil
}

// notifyHUP subscribes to SIGHUP for plainCapture, as early as runPlain
// starts: until then the signal's default action kills the process, and
// loading the plugins takes seconds (a SIGHUP then ended it silently with
// status 129).
func notifyHUP() chan os.Signal {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup
}

// sizeFlag is --capture-max-size: a byte size with a unit (64MiB), in the
// range a capture block's max_size takes, so that the flag and the file
// accept the same values.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := config.ParseSize(v)
	if err != nil {
		return err
	}
	if n < config.MinCaptureSize || n > config.MaxCaptureSize {
		return fmt.Errorf("%q is out of range: it must be from %s to %s", v, config.FormatSize(config.MinCaptureSize), config.FormatSize(config.MaxCaptureSize))
	}
	*s = sizeFlag(n)
	return nil
}
