package main

import (
	"bytes"
	"context"
	"io"
	"testing"

	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/examples/internal/extest"
)

// TestMain fails the package if a goroutine outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEchoBehindTunnel runs the example as `echo -listen 127.0.0.1:0` and
// talks to it through a tunnel.
func TestEchoBehindTunnel(t *testing.T) {
	addr, out := extest.Start(t, run, "-listen", "127.0.0.1:0")
	c := extest.Dial(t, extest.Tunnel(t, addr))

	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello\n" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	// A bigger payload, then the half-close: the echo ends with EOF.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
	go func() {
		c.Write(payload)
		c.CloseWrite()
	}()
	back, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(back, payload) {
		t.Fatalf("echoed %d of %d bytes, err %v", len(back), len(payload), err)
	}
	out.Wait(t, `\] echoed 1048582 bytes\n`)
}

func TestEchoBadFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-nope"}, io.Discard, &stderr); code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("flag provided but not defined: -nope")) {
		t.Errorf("stderr: %s", stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"-listen", "127.0.0.1:99999"}, io.Discard, &stderr); code != 1 {
		t.Errorf("bad address: exit status %d, want 1", code)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("127.0.0.1:99999")) {
		t.Errorf("bad address: stderr does not name it: %s", stderr.String())
	}
}
