// Package addr checks the host:port addresses the tunnel listens on and
// dials, for the host package, the CLI and the configuration loader alike.
package addr

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Check reports whether a is a host:port that can be listened on or
// dialled: the port must be a number from 0 to 65535.
func Check(a string) error {
	if a == "" {
		return errors.New("address is empty (want host:port, e.g. 127.0.0.1:8080)")
	}
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", a, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("address %q: port %q is not a number from 0 to 65535", a, port)
	}
	return nil
}
