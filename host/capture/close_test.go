package capture_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
)

// TestCloseWithAHungDisk: a Writer whose file never takes its bytes (a
// write stuck for good) does not hold up teardown: Close returns by
// CloseWait with an error that says so.
func TestCloseWithAHungDisk(t *testing.T) {
	t.Parallel()
	disk := &blocking{release: make(chan struct{})}
	t.Cleanup(func() { close(disk.release) }) // let the abandoned writer end
	w, err := capture.New(disk, capture.Options{CloseWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first, last := capture.Links(w)
	srv := testnet.Serve(t, testnet.Echo)
	addr, _, _ := testnet.Tunnel(t, srv.Addr(), first, last)
	sent := testnet.Random(4, 1<<20)
	if got := testnet.Exchange(testnet.Dial(t, addr), sent); got.Err != nil || got.Sum != testnet.Sum(sent) {
		t.Fatalf("transfer with a hung capture: %v", got.Err)
	}
	begin := time.Now()
	err = w.Close()
	took := time.Since(begin)
	if err == nil || !strings.Contains(err.Error(), "not written within 200ms (a write is stuck)") {
		t.Errorf("Close with a hung disk: %v", err)
	}
	if took > testnet.Timeout/2 {
		t.Errorf("Close took %v with a 200ms CloseWait", took)
	}
}
