package host_test

import (
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
	tn.EchoOnce(t, tn.Dial(t, p.Addr("d").String()), "ping")
}

// TestReapplyBoundAddress: a route applied on ":0" and applied again with
// the address Addr reported keeps its listener (and its open
// connections); it used to bind anew and fail with "address already in
// use".
func TestReapplyBoundAddress(t *testing.T) {
	t.Parallel()
	srv := tn.Serve(t, tn.Echo)
	p, _ := tn.Proxy(t, tn.Route("s", srv.Addr()))
	addr := p.Addr("s").String()
	c := tn.Dial(t, addr)
	tn.EchoOnce(t, c, "before")
	r := tn.Route("s", srv.Addr())
	r.Listen = addr
	if err := p.Apply([]host.Route{r}); err != nil {
		t.Fatalf("reapplying %s: %v", addr, err)
	}
	if got := p.Addr("s").String(); got != addr {
		t.Fatalf("the route listens on %s, want %s", got, addr)
	}
	tn.EchoOnce(t, c, "after") // the open connection lives on
	tn.EchoOnce(t, tn.Dial(t, addr), "new")
	// And once more, now that the key is the address itself.
	if err := p.Apply([]host.Route{r}); err != nil {
		t.Fatalf("reapplying %s again: %v", addr, err)
	}
	tn.EchoOnce(t, tn.Dial(t, addr), "again")
}
