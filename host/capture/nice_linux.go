package capture

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// writerNice is the nice value of the writer goroutine's thread: when the
// CPUs are busy, the threads that forward (nice 0) get about ten times its
// share, so the capture falls behind and drops packets instead of taking
// CPU time from the forwarding; on idle CPUs it runs at full speed.
const writerNice = 10

// lowerPriority locks the calling goroutine (the writer) to its thread and
// lowers that thread's priority. Linux's nice is per thread. It returns
// the function that undoes it, to be called on the same goroutine before it
// ends (the thread is then discarded by the runtime anyway, as it is
// locked when the goroutine exits).
func lowerPriority() (undo func()) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	old, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		runtime.UnlockOSThread()
		return func() {}
	}
	// getpriority(2) returns 20 - nice.
	oldNice := 20 - old
	if oldNice >= writerNice || unix.Setpriority(unix.PRIO_PROCESS, tid, writerNice) != nil {
		runtime.UnlockOSThread()
		return func() {}
	}
	return func() {
		// Leave the thread as it was if we can (raising the priority back
		// needs no privilege up to the soft limit); otherwise, exiting
		// with it locked makes the runtime discard the thread.
		if unix.Setpriority(unix.PRIO_PROCESS, tid, oldNice) == nil {
			runtime.UnlockOSThread()
		}
	}
}
