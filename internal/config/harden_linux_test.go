package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestParseNotAFile: a configuration or plugin file that is a named pipe
// nobody writes to hung Parse (and with it validate, the start and every
// reload) in open(2); a device was read as a file. Both are refused at
// once.
func TestParseNotAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := os.Rename(testkit.Fifo(t, "fifo"), fifo); err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(dir, "tunnel.hcl")
	os.WriteFile(plugin, []byte("plugin \"p\" { path = \"fifo\" }\nroute \"r\" {\n  listen = \"127.0.0.1:0\"\n  target = \"127.0.0.1:1\"\n  chain { plugin = plugin.p }\n}\n"), 0o644)
	done := make(chan string)
	go func() {
		_, diags := Parse(fifo, Options{})
		_, perr := readLimited(fifo, 1<<20)
		done <- fmt.Sprint(diags, "|", perr)
	}()
	select {
	case got := <-done:
		if want := fifo + " is a named pipe (FIFO), not a regular file"; strings.Count(got, want) != 2 {
			t.Errorf("got %s\nwant %q twice", got, want)
		}
	case <-time.After(hangBound):
		t.Fatal("Parse of a FIFO hangs")
	}
	if _, diags := Parse("/dev/zero", Options{}); !strings.Contains(fmt.Sprint(diags), "/dev/zero is a character device, not a regular file") {
		t.Errorf("/dev/zero: %v", diags)
	}
}
