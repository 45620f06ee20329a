//go:build linux

package evloop

import (
	"io"
	"testing"
	"time"
)

// TestReview2OpenWritesServerThenCloses: Open writes toward the server and
// closes before the dial: the connection ends (nothing is dialled).
func TestReview2OpenWritesServerThenCloses(t *testing.T) {
	checkFDs(t)
	_, target := startServer(t, echo)
	a, addr := startChained(t, target, func() Chain {
		return &funcChain{open: func(o *Output) error {
			o.Write(int(server), []byte("hello"))
			o.Write(int(client), []byte("bye"))
			o.Close()
			return nil
		}}
	})
	c := dial(t, addr)
	c.SetReadDeadline(time.Now().Add(testWait))
	got, err := io.ReadAll(c)
	if string(got) != "bye" || err != nil {
		t.Errorf("read %q, %v", got, err)
	}
	// The client's FIN ends the connection; without it the loop would
	// linger (lingerTime) for what the client still sends.
	c.CloseWrite()
	a.waitDone(t)
}
