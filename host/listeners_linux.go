//go:build linux

package host

import (
	"bytes"
	"os"
)

// migratesRequests reports whether the kernel moves a closing listener's
// queued connections to another socket of its SO_REUSEPORT group
// (net.ipv4.tcp_migrate_req, Linux 5.14).
func migratesRequests() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	return err == nil && string(bytes.TrimSpace(b)) == "1"
}
