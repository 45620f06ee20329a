//go:build unix

package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// holdCompileLock takes bin's compile lock in dir as another process
// would (flock on a file description of its own) and returns its release.
func holdCompileLock(t *testing.T, dir string, bin []byte) (release func()) {
	t.Helper()
	sum := sha256.Sum256(bin)
	path := filepath.Join(dir, lockDirName, hex.EncodeToString(sum[:16])+".lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

// waitingForLock makes compile signal the returned channel when it finds
// its lock taken.
func waitingForLock(t *testing.T) <-chan struct{} {
	waiting := make(chan struct{})
	var once sync.Once
	lockWaiting = func() { once.Do(func() { close(waiting) }) }
	t.Cleanup(func() { lockWaiting = nil })
	return waiting
}

// compileWhileLocked starts Compile of a test guest on an engine with a
// cache directory whose lock for the module another process holds, and
// returns Compile's result, the lock's release and a channel closed when
// Compile finds the lock taken.
func compileWhileLocked(ctx context.Context, t *testing.T) (done <-chan error, release func(), waiting <-chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	e, err := NewEngine(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	bin, err := os.ReadFile("../../plugin/testdata/v2_shared.wasm")
	if err != nil {
		t.Fatal(err)
	}
	ibin, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	release = holdCompileLock(t, dir, ibin) // Compile compiles the instrumented form
	waiting = waitingForLock(t)
	res := make(chan error, 1)
	go func() {
		_, err := e.Compile(ctx, bin)
		res <- err
	}()
	return res, release, waiting
}

// waitsForLock fails the test unless the compile (what) finds the lock
// taken and waits, neither returning (done) nor taking 20 s to get there.
func waitsForLock(t *testing.T, waiting <-chan struct{}, done <-chan error, what string) {
	t.Helper()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("%s returned (%v) while another process held the module's lock", what, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s neither waited for the lock nor returned in 20 s", what)
	}
}

// result is the compile's outcome (what, after what happened), within 20 s.
func result(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s still waiting after 20 s", what)
		return nil
	}
}

// A module another process is compiling into the same cache directory is
// waited for, not compiled side by side; once that process is done, the
// compile goes on.
func TestCompileWaitsForOtherProcessesCompile(t *testing.T) {
	done, release, waiting := compileWhileLocked(context.Background(), t)
	waitsForLock(t, waiting, done, "Compile")
	select {
	case err := <-done:
		t.Fatalf("Compile returned (%v) while another process held the module's lock", err)
	default:
	}
	release()
	if err := result(t, done, "Compile, the lock released,"); err != nil {
		t.Fatalf("Compile after the lock was released: %v", err)
	}
}

// A caller that gives up (its context done) stops waiting for the lock and
// returns its context's error, instead of hanging on another process or
// spending a compile of its own (wazero's compiler ignores ctx).
func TestCompileLockWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, _, waiting := compileWhileLocked(ctx, t)
	waitsForLock(t, waiting, done, "Compile")
	cancel()
	if err := result(t, done, "Compile, its context cancelled,"); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for another process to compile the module") {
		t.Errorf("Compile after its context was cancelled while waiting: %v; want the wait's context.Canceled (and no compile of its own)", err)
	}
}

// A variant compiled on first use (Trusted code here) that waits for
// another process's compile does not hold the module: Close returns at
// once, and the waiting call then finds it closed.
func TestCloseDoesNotWaitForOtherProcessesCompile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := NewEngine(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	bin, err := os.ReadFile("../../plugin/testdata/v2_shared.wasm")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Compile(ctx, bin) // the Sandboxed code only
	if err != nil {
		t.Fatal(err)
	}
	release := holdCompileLock(t, dir, bin) // Trusted code is bin as is
	waiting := waitingForLock(t)
	done := make(chan error, 1)
	go func() {
		_, _, _, err := c.module(ctx, Trusted)
		done <- err
	}()
	waitsForLock(t, waiting, done, "the Trusted compile")
	closed := make(chan error, 1)
	go func() { closed <- c.Close(ctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for another process's compile")
	}
	release()
	if err := result(t, done, "the Trusted compile, the lock released,"); !errors.Is(err, ErrClosed) {
		t.Errorf("the Trusted compile after Close: %v; want ErrClosed", err)
	}
}
