// Package flock takes exclusive advisory locks on files, which processes
// that share a directory use to do a piece of work once between them: the
// plugin runtime's compilation of a module into a shared cache, the test
// harness's builds of a plugin. A lock goes with its process: one that dies
// holding it holds nothing.
package flock

import "time"

// poll is how often a lock another process holds is tried again: polling
// rather than waiting in flock(2) lets the wait end with a context.
const poll = 20 * time.Millisecond
