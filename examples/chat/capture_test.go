package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/examples/internal/extest"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// TestChatCapture is the Wireshark lesson on the tunnel's own capture:
// three clients through a capturing tunnel give three TCP streams on the
// client interface (tcp.stream eq N, one per client), each with the
// client's line and the two lines it heard, and three on the target one.
func TestChatCapture(t *testing.T) {
	file := filepath.Join(t.TempDir(), "chat.pcapng")
	w, err := capture.Create(capture.Options{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	first, last := capture.Links(w)
	addr, out := extest.Start(t, run, "-listen", "127.0.0.1:0")
	tunnel := extest.Tunnel(t, addr, first, last)
	_, locals := chat(t, tunnel, out)
	w.Sync()

	f := tshark.Open(t, file)
	for leg := range 2 {
		streams := map[string]bool{}
		for _, s := range f.Fields(tshark.Interface(leg), "tcp.stream") {
			streams[s] = true
		}
		if len(streams) != 3 {
			t.Errorf("interface %d: %d TCP streams, want 3: %v", leg, len(streams), streams)
		}
	}
	for i, local := range locals {
		s := f.Follow(local, tunnel)
		if got, want := string(s.Data[0]), fmt.Sprintf("hello from client %d\r\n", i); got != want {
			t.Errorf("client %d sent %q, want %q", i, got, want)
		}
		heard := strings.Count(string(s.Data[1]), "hello from client")
		if heard != 2 || strings.Contains(string(s.Data[1]), fmt.Sprintf("client %d\r", i)) {
			t.Errorf("client %d heard %q, want the two others' lines", i, s.Data[1])
		}
	}
}
