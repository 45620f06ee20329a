package plugin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// These tests check what sdk/ABI.md says where authors used to guess.

// The WebAssembly 2.0 features (wazero's CoreFeaturesV2) work: bulk
// memory, multi-value, sign-extension, non-trapping conversions, SIMD.
func TestDocFeaturesWork(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "features", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "features", Hook: p})
	c := tn.Dial(t, addr)
	if _, err := c.Write([]byte("abcdefghijklmnop")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c, 20); got != "bcdefghijklmnopq!!!!" {
		t.Fatalf("answer %q", got)
	}
}

// The threads proposal (shared memory, atomics) is not enabled: such a
// module fails to load, with wazero's reason.
func TestDocThreadsRefused(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	_, err := rt.Compile(context.Background(), "threads", wasmGuest(t, "threads"))
	if err == nil || !strings.Contains(err.Error(), `plugin "threads"`) {
		t.Fatalf("compile: %v, want a load error", err)
	}
	t.Logf("the error: %v", err)
}

// send plus HOLD in one call: what the guest sent goes on at once, the
// held bytes later, with the call that forwards them.
func TestDocSendWithHold(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	p := wasmPlugin(t, rt, "sendhold", plugin.Options{})
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "sendhold", Hook: p, Directions: host.OnlyClientToServer})
	c := tn.Dial(t, addr)
	c.Write([]byte("ab"))
	if got := readN(t, c, 1); got != "<" { // echoed: "ab" is still held
		t.Fatalf("first %q, want <", got)
	}
	c.Write([]byte("cd"))
	if got := readN(t, c, 4); got != "abcd" {
		t.Fatalf("then %q, want abcd", got)
	}
}

// send toward a direction is refused (StatusNotAllowed) only when no link
// of the whole route sees that direction (it is spliced): with another
// link attached to it, the same plugin's send succeeds. statuses.wat
// records the send toward the server -> client direction as its 8th
// letter ('a' NotAllowed, 'd' OK).
func TestDocNotAttachedMeansTheWholeRoute(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		other bool
		want  byte
	}{{"alone", false, 'a'}, {"beside a link of the other direction", true, 'd'}} {
		t.Run(c.name, func(t *testing.T) {
			rt, logs := wasmRuntime(t)
			chain := []host.Link{{Name: "statuses", Hook: wasmPlugin(t, rt, "statuses", plugin.Options{}), Directions: host.OnlyClientToServer}}
			if c.other {
				chain = append(chain, host.Link{Name: "noop", Hook: wasmPlugin(t, rt, "noop", plugin.Options{}), Directions: host.OnlyServerToClient})
			}
			srv := tn.Serve(t, tn.Echo)
			addr, _, _ := tn.Tunnel(t, srv.Addr(), chain...)
			conn := tn.Dial(t, addr)
			conn.Write([]byte("x"))
			line := logs.Wait(t, "plugin=statuses", "msg=")
			_, msg, _ := strings.Cut(line, "msg=")
			if len(msg) < 12 || msg[7] != c.want {
				t.Fatalf("statuses %q: the send toward the server -> client direction is %q, want %q", msg, msg[min(7, len(msg)):min(8, len(msg))], c.want)
			}
		})
	}
}

// Connection ids start at 1: a guest never sees 0, and may use it as "no
// connection".
func TestDocConnIDsStartAtOne(t *testing.T) {
	t.Parallel()
	ids := make(chan uint64, 2)
	hook := idHook(ids)
	srv := tn.Serve(t, tn.Echo)
	addr, _, _ := tn.Tunnel(t, srv.Addr(), host.Link{Name: "ids", Hook: hook})
	for range 2 {
		c := tn.Dial(t, addr)
		c.Write([]byte("x"))
		readN(t, c, 1)
		c.Close()
	}
	if a, b := <-ids, <-ids; a != 1 || b != 2 {
		t.Fatalf("ids %d, %d; want 1, 2", a, b)
	}
}

// idHook reports the id of every connection it opens.
type idHook chan uint64

func (h idHook) Open(info *host.ConnInfo) (host.Filter, error) {
	h <- info.ID
	return host.PassThrough{}, nil
}
