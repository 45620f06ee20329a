package main

import (
	"bytes"
	"testing"
)

// validate -v shows each plugin's limits, defaults filled in, and the
// plugins' memory against plugin_memory_limit.
func TestValidateShowsSettings(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// The flag after the file works as well (it once read as a second file).
	var after bytes.Buffer
	if code := runValidate([]string{"testdata/valid.hcl", "-v"}, &after, &stderr); code != 0 {
		t.Fatalf("validate FILE -v: exit code %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if code := runValidate([]string{"-v", "testdata/valid.hcl"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr.String())
	}
	if after.String() != stdout.String() {
		t.Errorf("validate FILE -v printed\n%s\nvalidate -v FILE\n%s", after.String(), stdout.String())
	}
	want := "testdata/valid.hcl: valid (1 route(s), 1 plugin(s), 0 warning(s))\n" +
		`  plugin "stamp": 1 × 1MiB, call_timeout 100ms, on_failure close, trips after 5 failures in 10s, backoff 1s to 1m, logs 100/s (burst 200)` + "\n"
	if got := stdout.String(); len(got) < len(want) || got[:len(want)] != want || !bytes.HasPrefix(stdout.Bytes()[len(want):], []byte("  plugin memory: 1MiB of plugin_memory_limit ")) {
		t.Errorf("stdout\n%s\nwant it to start with\n%s  plugin memory: 1MiB of plugin_memory_limit ...", got, want)
	}
}
