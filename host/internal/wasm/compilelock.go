package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/flock"
)

// Processes that share a compilation cache directory (the CLI's
// --cache-dir, several tunnels started together on one host, the test
// processes of one `go test ./...`) each compile a module that is not in
// it yet: wazero's file cache has no lock, so two that start at once both
// spend the compile (a Go guest: about a second of CPU) and one writes
// what the other wrote. A compile takes a lock file per module in the
// directory first (compileLock): the second process waits for the first,
// then loads its code from the cache.

// lockDirName is the directory of the lock files, in the cache directory
// beside wazero's own.
const lockDirName = "tunnel-compile-locks"

// maxLockWait bounds the wait for another process's compile: one that is
// stopped (SIGSTOP) or stuck must not stop this one; past it the module
// is compiled here too, as without the lock.
const maxLockWait = 2 * time.Minute

// lockWaiting, when set (by tests), is called once when compileLock finds
// the lock taken and starts waiting.
var lockWaiting func()

// compileLock takes src's lock in the cache directory, when there is
// one, and returns its release (a no-op when there is no lock to take: no
// directory, a file system without locks, maxLockWait passed; the module
// may then be compiled twice). When ctx ends while it waits it returns
// ctx's error: the caller gave up, and wazero's compiler would not stop
// for it.
func (e *Engine) compileLock(ctx context.Context, src []byte) (unlock func(), err error) {
	if e.cacheDir == "" {
		return func() {}, nil
	}
	sum := sha256.Sum256(src)
	path := filepath.Join(e.cacheDir, lockDirName, hex.EncodeToString(sum[:16])+".lock")
	unlock = flock.Lock(ctx, path, maxLockWait, lockWaiting)
	if err := ctx.Err(); err != nil {
		if unlock != nil {
			unlock()
		}
		return nil, fmt.Errorf("waiting for another process to compile the module into %s: %w", e.cacheDir, err)
	}
	if unlock == nil {
		return func() {}, nil
	}
	return unlock, nil
}
