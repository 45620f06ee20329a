package plugintest

import (
	"context"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/internal/wasm"
	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// TestGoGuestManyConns: one instance of replace holding 10,000 open
// connections, each with a kept-back tail, fits in DefaultMemoryLimit. The
// pool pins many connections to each instance, so this is the memory a
// plugin's per-connection state really costs.
func TestGoGuestManyConns(t *testing.T) {
	const conns = 10000
	bin := Build(t, "../../plugins/replace")
	Precompile(bin) // under -race: compiled outside it
	ctx := context.Background()
	eng, err := wasm.NewEngine(CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	c, err := eng.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	in, err := c.Instantiate(ctx, wasm.Options{
		MemoryLimit: DefaultMemoryLimit, CallTimeout: 10 * time.Second, InitTimeout: 10 * time.Second,
		MaxOutput: 1 << 20, Config: []byte(`{"from":"needle","to":"pin"}`), Log: func(int32, []byte) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(ctx)
	h := &sinkHost{}
	chunk := []byte("a chunk that ends with the start of a need")
	for id := uint64(1); id <= conns; id++ {
		if r, err := in.OnOpen(h, id); err != nil || r != abi.OK {
			t.Fatalf("conn %d: on_open %d %v", id, r, err)
		}
		for dir := int32(0); dir < 2; dir++ {
			if _, err := in.OnData(h, id, dir, chunk, false); err != nil {
				t.Fatalf("conn %d: on_data: %v", id, err)
			}
		}
	}
	// Every connection still has its tail: the end flushes it.
	h.sent = 0
	for id := uint64(1); id <= conns; id++ {
		if _, err := in.OnData(h, id, 0, nil, true); err != nil {
			t.Fatalf("conn %d: end: %v", id, err)
		}
		if err := in.OnClose(h, id); err != nil {
			t.Fatalf("conn %d: on_close: %v", id, err)
		}
	}
	if h.sent != conns*len("need") {
		t.Fatalf("flushed %d bytes, want %d", h.sent, conns*len("need"))
	}
}
