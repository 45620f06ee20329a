package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopWhileStarting: a stop signal while the configuration still loads
// ends the process at once, with status 0 and a line that says so. Here
// the file is a FIFO nobody writes; in life it was a plugin whose compile
// nothing interrupts (seconds for a large module), and the tunnel waited
// for it, deaf to SIGTERM and SIGINT.
func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			fifo := filepath.Join(t.TempDir(), "tunnel.hcl")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			p := start(t, "--config", fifo)
			waitOpeningFIFO(t, p)
			p.cmd.Process.Signal(sig)
			if !p.exitedWithin(cliTimeout) {
				t.Fatalf("still running %v after %v while it loads its configuration; stderr:\n%s", cliTimeout, sig, p.stderr)
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
			}
			if want := "tunnel: stop signal while starting (loading the configuration and its plugins): exiting without serving"; !strings.Contains(p.stderr.String(), want) {
				t.Errorf("stderr does not say %q:\n%s", want, p.stderr)
			}
		})
	}
}

// waitOpeningFIFO waits until a thread of p is blocked opening a FIFO for
// reading (the kernel's wait_for_partner): no event says so, so it looks.
func waitOpeningFIFO(t *testing.T, p *proc) {
	t.Helper()
	deadline := time.Now().Add(cliTimeout)
	for {
		wchans, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", p.cmd.Process.Pid))
		for _, w := range wchans {
			if b, err := os.ReadFile(w); err == nil && string(b) == "wait_for_partner" {
				return
			}
		}
		if time.Now().After(deadline) || p.exitedWithin(0) {
			t.Fatalf("the tunnel never blocked opening its configuration FIFO; stderr:\n%s", p.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
