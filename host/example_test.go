package host_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/tunnelwasm/tunnel/host"
)

// A tunnel in front of an echo server, with a hook that upper-cases what the
// client sends.
func Example() {
	// The server: echoes one message.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	upper := host.ChunkFunc(func(info *host.ConnInfo, dir host.Direction, chunk []byte) ([]byte, error) {
		if dir == host.ClientToServer {
			return bytes.ToUpper(chunk), nil
		}
		return chunk, nil
	})
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err := p.Apply([]host.Route{{
		Name:   "echo",
		Listen: "127.0.0.1:0",
		Target: ln.Addr().String(),
		Chain:  []host.Link{{Name: "upper", Hook: upper}},
	}})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr("echo").String())
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("%s\n", reply)
	// Output: HELLO
}
