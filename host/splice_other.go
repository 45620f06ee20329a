//go:build !linux

package host

import (
	"fmt"
	"io"
	"net"
)

// spliceMovable: io.Copy cannot be resumed after a poke's deadline, so
// spliced pumps are not swept.
const spliceMovable = false

// splice is the path of a direction with no filter: io.Copy between the two
// TCP connections.
// Its pumps are never moved (handOff is always false).
func (c *conn) splice(dir Direction, src, dst *net.TCPConn) (handOff bool, err error) {
	n, err := io.Copy(dst, src)
	c.read[dir].Add(n)
	c.written[dir].Add(n)
	if err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	// Source ended: propagate the half-close.
	c.sawEOF(dir)
	if err := dst.CloseWrite(); err != nil && !c.td.aborted.Load() {
		return false, fmt.Errorf("half-close %s: %w", dir, err)
	}
	return false, nil
}
