//go:build !unix

package flock

import (
	"context"
	"time"
)

// Lock: no cross-process lock here; the work it guards may be done twice,
// which costs only time.
func Lock(context.Context, string, time.Duration, func()) (unlock func()) { return nil }
