//go:build !linux

// Command bench measures the tunnel against direct, socat, haproxy and
// nginx on loopback. It reads /proc and starts its servers in PID
// namespaces, so it runs on Linux only; elsewhere it says so.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "examples/bench runs on Linux only (it reads /proc and uses PID namespaces); this is %s\n", runtime.GOOS)
	os.Exit(2)
}
