package addr

import (
	"fmt"
	"net"
	"strings"
)

// Exposed checks a listen address for an endpoint meant for this machine
// only (the admin endpoint) and reports whether it is reachable from other
// machines: false for a loopback host (localhost, 127.0.0.0/8, ::1), true
// for any other host, including 0.0.0.0 and [::] written out. An empty
// host (":9901") is an error: it means every interface, which such an
// endpoint only does when the address says so.
func Exposed(a string) (bool, error) {
	if err := Check(a); err != nil {
		return false, err
	}
	host, port, _ := net.SplitHostPort(a)
	if host == "" {
		return false, fmt.Errorf("address %q has no host, which listens on every interface; write 127.0.0.1:%s for this machine only, or 0.0.0.0:%s to expose it on purpose", a, port, port)
	}
	return !loopback(host), nil
}

// loopback reports whether host is localhost or a loopback address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
