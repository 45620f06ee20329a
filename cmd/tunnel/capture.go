package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
)

// plainCapture puts the capture links of --capture FILE around route's
// chain (nothing when path is empty) and starts a new file on each SIGHUP
// until ctx ends. The returned function closes the file: call it after the
// proxy is shut down.
func plainCapture(ctx context.Context, path string, route *host.Route, logger *slog.Logger) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	w, err := capture.Create(capture.Options{Path: path, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--capture: %w", err)
	}
	first, last := capture.Links(w)
	route.Chain = append(append([]host.Link{first}, route.Chain...), last)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				w.Rotate()
				logger.Info("capture: SIGHUP: started a new file", "path", path)
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		<-done
		if err := w.Close(); err != nil {
			logger.Error("capture: closing", "path", path, "err", err)
		}
	}, nil
}
