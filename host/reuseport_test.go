package host_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestReusePort: two proxies bind one address with ReusePort, both serve
// it, and once the first shuts down the second serves every new client —
// the upgrade path. Without ReusePort the second bind fails.
func TestReusePort(t *testing.T) {
	echo := tn.Serve(t, tn.Echo)
	addr := testkit.FreeAddr(t)
	route := host.Route{Name: "r", Listen: addr, Target: echo.Addr(), ReusePort: true}
	old, _ := tn.Proxy(t, route)

	plain := route
	plain.ReusePort = false
	if err := (&host.Proxy{}).Apply([]host.Route{plain}); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a second bind without ReusePort: %v, want address already in use", err)
	}

	next, _ := tn.Proxy(t, route)
	// The kernel spreads connections by their addresses: dial until the
	// new process has served one (bounded).
	for i := 0; routeStats(t, next, "r").Accepted == 0; i++ {
		if i == 1000 {
			t.Fatalf("1000 connections, none served by the second proxy: %+v", old.Stats())
		}
		if got := tn.Exchange(tn.Dial(t, addr), []byte("ping")); got.Err != nil || got.N != 4 {
			t.Fatalf("connection %d: %+v", i, got)
		}
	}
	if err := old.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := routeStats(t, next, "r").Accepted
	for i := range 20 {
		if got := tn.Exchange(tn.Dial(t, addr), []byte("ping")); got.Err != nil || got.N != 4 {
			t.Fatalf("connection %d after the old proxy stopped: %+v", i, got)
		}
	}
	if n := routeStats(t, next, "r").Accepted - before; n != 20 {
		t.Fatalf("the new proxy served %d of the 20 connections after the swap", n)
	}
}
