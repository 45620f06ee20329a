//go:build !linux

package sockq

import "time"

// sentAgo cannot read a socket's state here.
func sentAgo(int) (time.Duration, bool) { return 0, false }
