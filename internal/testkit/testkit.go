// Package testkit holds the test helpers that packages across the module
// share (cmd/, examples/, host/, internal/): one copy each, instead of one
// per package. Loopback only; everything a helper opens is closed by
// t.Cleanup.
package testkit

import (
	"bytes"
	"flag"
	"strconv"
	"sync"
)

// DefaultParallel sets -test.parallel to n unless the command line set it,
// for a package whose parallel tests mostly wait (on timeouts, lingers,
// child processes) rather than compute, so that they need not take turns
// for one slot per core. Call it from TestMain before m.Run; it parses the
// flags.
func DefaultParallel(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// Buffer is a bytes.Buffer safe for concurrent use: a log, a process's
// output or a key log that several goroutines write while a test reads it.
// The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of what was written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}
