//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// naiveChildEnv makes the benchmark binary the "naive forwarder" target:
// LISTEN,BACKEND in the variable. It is the Go forwarder of a tutorial,
// the yardstick the tunnel's CPU per request is held against: a goroutine
// per direction, io.Copy (which is splice on Linux), and both sockets
// closed as soon as either direction ends (no half-close).
const naiveChildEnv = "TUNNEL_BENCH_NAIVE_CHILD"

// naiveChild is the main of the naive forwarder: it serves until killed.
func naiveChild(spec string) int {
	listen, backend, ok := strings.Cut(spec, ",")
	if !ok {
		fmt.Fprintf(os.Stderr, "%s=%q: want LISTEN,BACKEND\n", naiveChildEnv, spec)
		return 2
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			defer c.Close()
			s, err := net.Dial("tcp", backend)
			if err != nil {
				return
			}
			defer s.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(s, c); done <- struct{}{} }()
			go func() { io.Copy(c, s); done <- struct{}{} }()
			<-done
		}()
	}
}
