// Package demoredis is the small Redis-like server that `tunnel demo` puts
// behind the tunnel, so that the first command a newcomer runs shows a
// plugin at work with nothing else installed. It speaks Redis' inline
// protocol (one command a line, words separated by spaces, as typed into
// nc or telnet) and answers in RESP, like Redis: PING, ECHO, SET, GET, DEL,
// KEYS, FLUSHALL, FLUSHDB and QUIT, on an in-memory map shared by every
// connection.
package demoredis

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
)

// MaxLine is the longest command line the server reads; a longer one gets
// an error reply and the connection is closed.
const MaxLine = 64 << 10

// Server is the in-memory store and its connections. The zero value is an
// empty server ready to Serve.
type Server struct {
	mu     sync.Mutex
	data   map[string]string
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// Serve accepts connections on ln and serves each on its own goroutine
// until ln is closed; it then returns nil. Close stops it.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("demoredis: accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		if s.conns == nil {
			s.conns = map[net.Conn]bool{}
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close closes every open connection and waits for their goroutines; the
// caller closes the listener.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), MaxLine)
	for sc.Scan() {
		reply, quit := s.Do(strings.Fields(sc.Text()))
		if reply == "" {
			continue
		}
		if _, err := c.Write([]byte(reply)); err != nil || quit {
			return
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		c.Write([]byte(fmt.Sprintf("-ERR line longer than %d bytes\r\n", MaxLine)))
	}
}

// Do runs one command (its words) and returns the RESP reply, "" for an
// empty line (ignored, as Redis does), and whether the connection ends.
func (s *Server) Do(words []string) (reply string, quit bool) {
	if len(words) == 0 {
		return "", false
	}
	cmd, args := strings.ToUpper(words[0]), words[1:]
	arity := map[string][2]int{ // min, max arguments; -1: any
		"PING": {0, 1}, "ECHO": {1, 1}, "SET": {2, 2}, "GET": {1, 1}, "DEL": {1, -1},
		"KEYS": {0, 0}, "FLUSHALL": {0, 0}, "FLUSHDB": {0, 0}, "QUIT": {0, 0},
	}
	a, ok := arity[cmd]
	if !ok {
		return fmt.Sprintf("-ERR unknown command '%s'\r\n", words[0]), false
	}
	if len(args) < a[0] || a[1] >= 0 && len(args) > a[1] {
		return fmt.Sprintf("-ERR wrong number of arguments for '%s' command\r\n", strings.ToLower(cmd)), false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cmd {
	case "PING":
		if len(args) == 1 {
			return bulk(args[0]), false
		}
		return "+PONG\r\n", false
	case "ECHO":
		return bulk(args[0]), false
	case "SET":
		if s.data == nil {
			s.data = map[string]string{}
		}
		s.data[args[0]] = args[1]
		return "+OK\r\n", false
	case "GET":
		v, ok := s.data[args[0]]
		if !ok {
			return "$-1\r\n", false
		}
		return bulk(v), false
	case "DEL":
		n := 0
		for _, k := range args {
			if _, ok := s.data[k]; ok {
				delete(s.data, k)
				n++
			}
		}
		return fmt.Sprintf(":%d\r\n", n), false
	case "KEYS":
		keys := make([]string, 0, len(s.data))
		for k := range s.data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(keys))
		for _, k := range keys {
			b.WriteString(bulk(k))
		}
		return b.String(), false
	case "FLUSHALL", "FLUSHDB":
		clear(s.data)
		return "+OK\r\n", false
	}
	return "+OK\r\n", true // QUIT
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
