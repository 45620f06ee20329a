package main

// TEMPORARY (lead): stand-ins until the "hcl" engineer's cmd/tunnel/config.go
// lands. Whoever adds config.go with runConfig/runValidate deletes this file.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

func runConfig(ctx context.Context, path string, stdout, stderr io.Writer, logger *slog.Logger) int {
	fmt.Fprintf(stderr, "tunnel: config mode (%s) is not available yet\n", path)
	return 1
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tunnel: validate is not available yet")
	return 1
}
