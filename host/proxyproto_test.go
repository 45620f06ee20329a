package host_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
)

// The server behind the tunnel learns the client's real address from the
// PROXY header, then reads the client's bytes unchanged.
func TestProxyProtocolTellsTheServerWhoTheClientIs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		header, rest string
		err          error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		h, err := r.ReadString('\n')
		if err != nil {
			got <- result{err: err}
			return
		}
		rest, err := io.ReadAll(r)
		got <- result{h, string(rest), err}
	}()

	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	if err := p.Apply([]host.Route{{Name: "pp", Listen: "127.0.0.1:0", Target: ln.Addr().String(),
		Chain: []host.Link{{Name: "proxy-protocol", Hook: host.ProxyProtocol(), Directions: host.OnlyClientToServer}}}}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr("pp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	client := c.LocalAddr().(*net.TCPAddr)
	listen := c.RemoteAddr().(*net.TCPAddr)
	want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", client.Port, listen.Port)
	if r.header != want || r.rest != "hello" {
		t.Fatalf("server read header %q then %q; want %q then %q", r.header, r.rest, want, "hello")
	}
}
