//go:build unix

package plugintest

import "syscall"

// processEnded reports whether no process pid runs any more.
func processEnded(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }
