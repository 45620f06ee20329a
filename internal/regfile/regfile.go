// Package regfile opens the files the tunnel reads whole (configuration,
// plugins, certificates, captures) without ever blocking on one that is
// not a file: a named pipe nobody writes to would hang the open (and the
// process) forever, and a device such as /dev/zero never ends.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Open opens path for reading if it is a regular file. A directory is a
// *fs.PathError wrapping syscall.EISDIR (as reading one would be); any
// other kind of file (named pipe, device, socket) is an error naming it.
// The open does not block: O_NONBLOCK, which changes nothing for a
// regular file, makes a named pipe's open return at once.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := Check(path, st.Mode()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Check reports a mode that is not a regular file's, as Open does.
func Check(path string, mode fs.FileMode) error {
	switch {
	case mode.IsRegular():
		return nil
	case mode.IsDir():
		return &fs.PathError{Op: "read", Path: path, Err: syscall.EISDIR}
	}
	return fmt.Errorf("%s is %s, not a regular file", path, Kind(mode))
}

// Kind names the kind of a file that is not a regular file.
func Kind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a device"
	case mode.IsDir():
		return "a directory"
	}
	return "not a regular file"
}

// ReadFile reads the whole regular file at path (as Open opens it), of at
// most limit bytes: a larger one is an error naming its size and the most
// `what` may have (e.g. "a plugin"); a directory is "PATH is a directory,
// not a file".
func ReadFile(path string, limit int64, what string) ([]byte, error) {
	f, err := Open(path)
	if errors.Is(err, syscall.EISDIR) {
		return nil, fmt.Errorf("%s is a directory, not a file", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d %s may have", path, st.Size(), limit, what)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s grew past %d bytes while being read", path, limit)
	}
	return b, nil
}
