//go:build unix

package testkit

import (
	"syscall"
	"time"
)

// ProcessCPU is the user plus system CPU time the process has used: the
// cost benchmarks report per op (ReportMetric "cpu-ns/op") beside the wall
// time, which a second core or a wait hides.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// setReceiveBuffer sets SO_RCVBUF of socket fd.
func setReceiveBuffer(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
