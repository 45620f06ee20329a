package plugin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestLoadRefusesWhatIsNotAFile: Load of a named pipe nobody writes to
// hung in open(2), and of /dev/zero read until the memory ran out; each is
// an error naming the kind of file, at once.
func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	fifo := testkit.Fifo(t, "plugin.wasm")
	for path, want := range map[string]string{
		fifo:        fifo + " is a named pipe (FIFO), not a regular file",
		"/dev/zero": "/dev/zero is a character device, not a regular file",
	} {
		done := make(chan error, 1)
		go func() {
			_, err := rt.Load(ctx, path, plugin.Options{})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) = %v, want an error containing %q", path, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) has not returned after 10 s", path)
		}
	}
}
