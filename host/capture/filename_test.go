package capture_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestLogNamesTheFile: the log names each file the capture writes, since
// it may not be the path asked for (here c.pcapng is taken, so the capture
// goes to c-1.pcapng), and each old file that max_files removes; a file
// whose name has the pattern's shape but that is no pcapng stays. Neither
// used to be logged: a user opened c.pcapng and read an older run.
func TestLogNamesTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	taken := filepath.Join(dir, "c.pcapng")
	if err := os.WriteFile(taken, []byte("\x0a\x0d\x0d\x0a an earlier run"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A user's file whose name has the pattern's shape, but no capture's
	// content: max_files must leave it.
	mine := filepath.Join(dir, "c-2025.pcapng")
	if err := os.WriteFile(mine, []byte("my notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testkit.Buffer
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{Path: taken, MaxFiles: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := testnet.Dial(t, s.addr)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.finish(t)
	out := logs.String()
	want := filepath.Join(dir, "c-1.pcapng")
	if !strings.Contains(out, `msg="capture: writing" file=`+want) {
		t.Errorf("log:\n%s\nwant a line naming the file written, %s", out, want)
	}
	if !strings.Contains(out, `msg="capture: removed an old file" file=`+taken) {
		t.Errorf("log:\n%s\nwant a line naming the file max_files removed, %s", out, taken)
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "my notes\n" {
		t.Errorf("max_files removed or changed a file no capture wrote (%s): %q, %v", mine, b, err)
	}
}
