//go:build !unix

package wasm

import "context"

// lockFile: no cross-process lock here; a module may be compiled by two
// processes at once, which costs only time.
func lockFile(context.Context, string) (unlock func()) { return nil }
