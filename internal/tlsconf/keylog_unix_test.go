//go:build unix

package tlsconf

import (
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestKeyLogFIFO: a key_log that is a named pipe nobody reads is refused
// at once, naming it, instead of hanging the load (and with it a reload
// and the signals the reload loop handles) in open(2).
func TestKeyLogFIFO(t *testing.T) {
	path := testkit.Fifo(t, "keys.fifo")
	done := make(chan error, 1)
	go func() {
		kl, err := OpenKeyLog(path)
		if err == nil {
			kl.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "key_log "+path+" is a named pipe (FIFO), not a regular file") {
			t.Fatalf("OpenKeyLog of a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OpenKeyLog of a FIFO nobody reads hangs")
	}
}
