package tlsconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/tunnelwasm/tunnel/internal/regfile"
)

// KeyLog is an NSS key log file (the SSLKEYLOGFILE format Wireshark reads
// to decrypt a capture), for tls.Config.KeyLogWriter. It is opened for
// appending only, created with mode 0600, and meant to be shared by every
// config that names the same path (across reloads), so no line is lost or
// interleaved. Anyone who can read it can decrypt the recorded sessions.
type KeyLog struct {
	path string
	mu   sync.Mutex
	f    *os.File
	err  error
}

// OpenKeyLog opens (creating it with mode 0600) the key log file at path
// for appending. A file others can read is refused: it holds secrets.
func OpenKeyLog(path string) (*KeyLog, error) {
	// A named pipe's open for writing waits for a reader: forever, with
	// the reload (and the signals it handles) stuck behind it. Refuse
	// one, and open with O_NONBLOCK (nothing for a regular file) in case
	// one appears in between.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("tls: key_log %s is %s, not a regular file", path, regfile.Kind(st.Mode()))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tls: key_log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tls: key_log %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("tls: key_log %s is not a regular file", path)
	}
	if err := checkMode(path, st); err != nil {
		f.Close()
		return nil, err
	}
	return &KeyLog{path: path, f: f}, nil
}

// CheckKeyLog checks the key log path as OpenKeyLog would, without
// creating or opening anything (for validation): an existing file must be
// a regular file readable by its owner alone, and a missing one must be
// creatable, in an existing directory.
func CheckKeyLog(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && !st.Mode().IsRegular():
		return fmt.Errorf("tls: key_log %s is %s, not a regular file", path, regfile.Kind(st.Mode()))
	case err == nil:
		return checkMode(path, st)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("tls: key_log: %w", err)
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		return fmt.Errorf("tls: key_log %s cannot be created: %w", path, err)
	} else if !st.IsDir() {
		return fmt.Errorf("tls: key_log %s cannot be created: %s is not a directory", path, dir)
	}
	return nil
}

// checkMode refuses a key log others can read.
func checkMode(path string, st os.FileInfo) error {
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("tls: key_log %s has mode %04o, readable by others, and it holds session secrets; chmod 600 it", path, perm)
	}
	return nil
}

// Recheck looks at the key log's path again, as a reload must: moved is
// true when the path no longer names the open file (removed, or replaced
// by another), which the caller then opens anew; err is the mode check of
// OpenKeyLog on the file still open.
func (k *KeyLog) Recheck() (moved bool, err error) {
	k.mu.Lock()
	f := k.f
	k.mu.Unlock()
	if f == nil {
		return true, nil
	}
	st, err := os.Stat(k.path)
	if err != nil {
		return true, nil
	}
	open, err := f.Stat()
	if err != nil || !os.SameFile(st, open) {
		return true, nil
	}
	return false, checkMode(k.path, st)
}

// Path is the file's path.
func (k *KeyLog) Path() string { return k.path }

// Write appends one line (crypto/tls writes each line in one call). It
// never fails: crypto/tls aborts the handshake on a key log error, and a
// debugging aid must not take connections down. A failed write (disk
// full) or a write after Close drops the line; Err reports the first
// failure.
func (k *KeyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		if k.err == nil {
			k.err = errors.New("tls: key_log: written after Close")
		}
		return len(p), nil
	}
	if _, err := k.f.Write(p); err != nil && k.err == nil {
		k.err = fmt.Errorf("tls: key_log %s: %w", k.path, err)
	}
	return len(p), nil
}

// Err is the first write failure, or nil.
func (k *KeyLog) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Close closes the file; later writes are dropped.
func (k *KeyLog) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f = nil
	return err
}
