//go:build unix

package testkit

import (
	"path/filepath"
	"syscall"
	"testing"
)

// Fifo makes a named pipe called name in a temporary directory of t and
// returns its path: the file nobody writes to that a reader must not
// block on.
func Fifo(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
	return path
}
