package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flaky fails its first Accept calls with err, then accepts for real.
type flaky struct {
	net.Listener
	fails int
	err   error
}

func (f *flaky) Accept() (net.Conn, error) {
	if f.fails > 0 {
		f.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: f.err}
	}
	return f.Listener.Accept()
}

func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestOutOfFilesIsWaitedOut: EMFILE from Accept does not stop the server.
func TestOutOfFilesIsWaitedOut(t *testing.T) {
	ln := &flaky{Listener: listen(t), fails: 3, err: syscall.EMFILE}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Conns(ctx, ln, func(c net.Conn) { io.WriteString(c, "served\n") })
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "served\n" {
		t.Errorf("client got %q, %v", got, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Conns after cancel: %v", err)
	}
}

// TestOtherAcceptErrorsEndServe: any other accept error ends Conns with
// an error naming the address.
func TestOtherAcceptErrorsEndServe(t *testing.T) {
	ln := &flaky{Listener: listen(t), fails: 1, err: syscall.EINVAL}
	err := Conns(context.Background(), ln, func(net.Conn) {})
	if err == nil || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "accept on "+ln.Addr().String()) {
		t.Errorf("Conns: %v", err)
	}
}
