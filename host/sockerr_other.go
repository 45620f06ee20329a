//go:build !unix

package host

import "syscall"

// pollsSockets: socketState cannot tell a failed socket off Unix, so a
// deferred half-close whose peer then resets is noticed only when the
// filter finishes it or teardown runs, and a paused source's reset only
// once its reads resume.
const pollsSockets = false

// socketState reports nothing (see pollsSockets).
func socketState(syscall.RawConn) (hup bool, err error) { return false, nil }
