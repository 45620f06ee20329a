//go:build unix

package flock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Lock takes an exclusive flock(2) on path (made, with its directory, if
// needed), waiting while another process holds it, and returns its
// release. It returns nil when the lock cannot be had: the file cannot be
// made or locked (a file system without locks), ctx ended, or maxWait
// passed. waiting, when not nil, is called once if the lock is found taken.
func Lock(ctx context.Context, path string, maxWait time.Duration, waiting func()) (unlock func()) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o644) // flock needs no write access
	if err != nil {
		return nil
	}
	deadline := time.Now().Add(maxWait)
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() } // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil
		}
		if !waited && waiting != nil {
			waiting()
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil
		case <-t.C:
		}
	}
}
