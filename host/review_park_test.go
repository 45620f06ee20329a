package host

import (
	"io"
	"sync"
	"testing"
	"time"
)

// TestReviewCloseWhilePumpsParkAndWake closes a proxy while its pumps park
// and wake as fast as pokes and echoes make them: Close returns promptly,
// every connection finishes, and no pump goroutine is left.
func TestReviewCloseWhilePumpsParkAndWake(t *testing.T) {
	id := ChunkFunc(func(_ *ConnInfo, _ Direction, b []byte) ([]byte, error) { return b, nil })
	p := startProxy(t, nil, Route{Name: "s", Listen: "127.0.0.1:0", Target: echoServer(t), Chain: []Link{{Name: "id", Hook: id}}})
	const conns = 16
	var wg sync.WaitGroup
	for range conns {
		c := dialRoute(t, p, "s")
		askEcho(t, c, "hi")
		wg.Add(1)
		go func() { // echo until the proxy closes the connection
			defer wg.Done()
			b := make([]byte, 3)
			for {
				if _, err := c.Write([]byte("abc")); err != nil {
					return
				}
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	stormDone := make(chan struct{})
	go func() {
		defer close(stormDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range openConns(p) {
				if c.pumps.Load() > 0 {
					c.poke(ClientToServer)
					c.poke(ServerToClient)
				}
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	// Let pumps park and wake a while (seen parked at 20 samples), then
	// close while they still do.
	for seen, deadline := 0, time.Now().Add(30*time.Second); seen < 20; {
		if parkedPumps(p) > 0 {
			seen++
		}
		if time.Now().After(deadline) {
			t.Fatalf("pumps seen parked at %d samples in 30s of pokes, want 20", seen)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s while pumps parked and woke")
	}
	close(stop)
	<-stormDone
	t.Logf("Close took %v", time.Since(start))
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	select {
	case <-clientsDone:
	case <-time.After(10 * time.Second):
		t.Fatal("clients still connected 10s after Close")
	}
	if n := len(openConns(p)); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
	p.mu.Lock()
	awake, pk := len(p.awake), p.parker
	p.mu.Unlock()
	if awake != 0 || pk != nil {
		t.Fatalf("after Close: %d connections in Proxy.awake, parker %v; want none", awake, pk)
	}
	for deadline := time.Now().Add(10 * time.Second); pumpGoroutines(false) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d pump goroutines left 10s after Close", pumpGoroutines(false))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
