package host_test

import (
	"io"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// TestApplyRejectsNilChunkFunc: a nil ChunkFunc in a Link is refused by
// Apply like a nil Hook, instead of failing every connection with a
// recovered nil-pointer panic.
func TestApplyRejectsNilChunkFunc(t *testing.T) {
	t.Parallel()
	var p host.Proxy
	defer p.Close()
	err := p.Apply([]host.Route{{Name: "a", Listen: "127.0.0.1:0", Target: "127.0.0.1:1",
		Chain: []host.Link{{Name: "x", Hook: host.ChunkFunc(nil)}}}})
	if err == nil || !strings.Contains(err.Error(), "has no hook") {
		t.Fatalf("Apply with a nil ChunkFunc: %v", err)
	}
}

// TestDumpNilWriterDiscards: Dump(nil, …) was accepted, then reset every
// connection; a nil writer now discards the dump and the bytes pass.
func TestDumpNilWriterDiscards(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, tn.Route("d", srv.Addr(), host.Link{Name: "dump", Hook: host.Dump(nil, host.DumpHex)}))
	c := tn.Dial(t, p.Addr("d").String())
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through Dump(nil): %q, %v", buf, err)
	}
}
