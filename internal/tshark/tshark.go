// Package tshark runs Wireshark's command-line reader over the pcapng files
// the tests write, so that they are checked by the dissectors a user
// opens them with, not by the code that wrote them.
package tshark

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Path returns the tshark binary, or skips t when there is none; under CI
// (CI=true), where .ci/run installs it, a missing tshark fails t instead.
func Path(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tshark is missing under CI: %v", err)
		}
		t.Skip("tshark not installed (apt-get install tshark):", err)
	}
	return p
}

// Run runs tshark -r file with args and returns its stdout; a failure
// fails t with its stderr.
func Run(t testing.TB, file string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Path(t), append([]string{"-r", file}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s %s: %v\n%s", file, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Stream is one TCP stream as "Follow TCP Stream" shows it: the bytes each
// node sent. Node 0 is the endpoint that sent first.
type Stream struct {
	Nodes [2]string
	Data  [2][]byte
}

// ParseFollow parses the output of -z follow,tcp,raw: hex lines, those of
// node 1 indented by a tab.
func ParseFollow(out string) (Stream, error) {
	var s Stream
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "Node 0: "):
			s.Nodes[0] = strings.TrimPrefix(line, "Node 0: ")
		case strings.HasPrefix(line, "Node 1: "):
			s.Nodes[1] = strings.TrimPrefix(line, "Node 1: ")
			in = true
		case strings.HasPrefix(line, "====="):
			in = false
		case in && line != "":
			node := 0
			if strings.HasPrefix(line, "\t") {
				node = 1
			}
			b, err := hex.DecodeString(strings.TrimSpace(line))
			if err != nil {
				return s, fmt.Errorf("line %q: %w", line, err)
			}
			s.Data[node] = append(s.Data[node], b...)
		}
	}
	if s.Nodes[0] == "" {
		return s, fmt.Errorf("no stream in the output")
	}
	return s, nil
}

// Fields returns, one line per packet matching filter (all when empty), the
// given fields separated by tabs.
func Fields(t testing.TB, file, filter string, fields ...string) []string {
	t.Helper()
	args := []string{"-T", "fields"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out := strings.TrimRight(Run(t, file, args...), "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}
