//go:build !unix && !windows

package testkit

import (
	"errors"
	"time"
)

// ProcessCPU is the user plus system CPU time the process has used; 0
// where the system does not say (js, wasip1: the tests do not run there,
// but the packages' tests still build).
func ProcessCPU() time.Duration { return 0 }

// setReceiveBuffer is unsupported here.
func setReceiveBuffer(uintptr, int) error {
	return errors.New("testkit: no SO_RCVBUF on this system")
}
