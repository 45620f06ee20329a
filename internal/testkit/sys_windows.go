package testkit

import (
	"syscall"
	"time"
)

// ProcessCPU is the user plus system CPU time the process has used: the
// cost benchmarks report per op (ReportMetric "cpu-ns/op") beside the wall
// time, which a second core or a wait hides.
func ProcessCPU() time.Duration {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0
	}
	var creation, exit, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	// Filetime counts 100 ns intervals; Nanoseconds reads it as a date
	// (since 1601, minus the Unix epoch), so the raw halves are used.
	ticks := func(f syscall.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }
	return time.Duration((ticks(kernel) + ticks(user)) * 100)
}

// setReceiveBuffer sets SO_RCVBUF of socket fd.
func setReceiveBuffer(fd uintptr, n int) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
