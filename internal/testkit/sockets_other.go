//go:build !unix

package testkit

import "testing"

// Refusing returns a loopback address that refuses connections. Off Unix
// it is a free port (FreeAddr), which another test's listener may take
// meanwhile (on Unix a socket stays bound to it, see sockets_unix.go).
func Refusing(t testing.TB) string {
	t.Helper()
	return FreeAddr(t)
}

// BlackHole returns a loopback address whose connect(2) gets no answer.
// Off Unix there is none to make (a full backlog refuses on Windows), so
// the test is skipped: the tests run on Linux, and this keeps them
// building elsewhere.
func BlackHole(t testing.TB) string {
	t.Helper()
	t.Skip("testkit.BlackHole: no loopback address that leaves a connect unanswered on this system")
	return ""
}
