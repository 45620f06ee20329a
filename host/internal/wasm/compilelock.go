package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"time"

	"github.com/tetratelabs/wazero"
)

// Processes that share a compilation cache directory (the CLI's
// --cache-dir, several tunnels started together on one host, the test
// processes of one `go test ./...`) each compile a module that is not in
// it yet: wazero's file cache has no lock, so two that start at once both
// spend the compile (a Go guest: about a second of CPU) and one writes
// what the other wrote. compile takes a lock file per module in the
// directory first: the second process waits for the first, then loads
// its code from the cache.

// lockDirName is the directory of the lock files, in the cache directory
// beside wazero's own.
const lockDirName = "tunnel-compile-locks"

// maxLockWait bounds the wait for another process's compile: one that is
// stopped (SIGSTOP) or stuck must not stop this one; past it the module
// is compiled here too, as without the lock.
const maxLockWait = 2 * time.Minute

// lockPoll is how often a busy lock is tried again.
const lockPoll = 20 * time.Millisecond

// lockWaiting, when set (by tests), is called once when compile finds the
// lock taken and starts waiting.
var lockWaiting func()

// compile compiles src in rt, first taking src's lock in the cache
// directory when there is one. A lock that cannot be had (no directory,
// a file system without locks, ctx done, maxLockWait passed) only means
// the module may be compiled twice.
func (e *Engine) compile(ctx context.Context, rt wazero.Runtime, src []byte) (wazero.CompiledModule, error) {
	if e.cacheDir != "" {
		sum := sha256.Sum256(src)
		path := filepath.Join(e.cacheDir, lockDirName, hex.EncodeToString(sum[:16])+".lock")
		if unlock := lockFile(ctx, path); unlock != nil {
			defer unlock()
		}
	}
	return rt.CompileModule(ctx, src)
}
