package main

import (
	"io"
	"testing"

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/examples/internal/extest"
)

// TestMain fails the package if a goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWelcomeBehindTunnel reads the welcome through a tunnel before
// writing anything: with a tunnel that waited for the client, this read
// would time out.
func TestWelcomeBehindTunnel(t *testing.T) {
	addr, out := extest.Start(t, run, "-listen", "127.0.0.1:0")
	c := extest.Dial(t, extest.Tunnel(t, addr))

	got := make([]byte, len(Welcome))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != Welcome {
		t.Fatalf("first bytes: %q, %v; want %q before the client says anything", got, err, Welcome)
	}
	io.WriteString(c, "hi there\n")
	c.CloseWrite()
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "hi there\n" {
		t.Fatalf("echo after the welcome: %q, %v", rest, err)
	}
	out.Wait(t, `done after echoing 9 bytes \(clean end\)`)
}
