//go:build unix

package wasm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock(2) on path (made if needed), waiting
// while another process holds it, and returns its release; nil when it
// cannot be had (see compileLock). The lock goes with the process, so a
// process that dies holding it holds nothing.
func lockFile(ctx context.Context, path string) (unlock func()) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o644) // flock needs no write access
	if err != nil {
		return nil
	}
	deadline := time.Now().Add(maxLockWait)
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() } // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil
		}
		if !waited && lockWaiting != nil {
			lockWaiting()
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil
		case <-t.C:
		}
	}
}
