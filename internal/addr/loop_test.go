package addr

import "testing"

func TestLoops(t *testing.T) {
	for _, tc := range []struct {
		listen, target string
		loops          bool
	}{
		{"127.0.0.1:9090", "127.0.0.1:9090", true},
		{"127.0.0.1:9090", "127.0.0.1:8080", false},
		{"[::1]:9090", "[0:0::1]:9090", true},
		{"localhost:9090", "LOCALHOST:9090", true},
		{":9090", "127.0.0.1:9090", true},
		{"0.0.0.0:9090", "localhost:9090", true},
		{"[::]:9090", "[::1]:9090", true},
		{"0.0.0.0:9090", "0.0.0.0:9090", true},
		{"127.0.0.1:9090", "127.0.0.2:9090", false}, // another loopback address: another socket
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"0.0.0.0:9090", "192.0.2.1:9090", false}, // TEST-NET: not this machine
		{"0.0.0.0:9090", "db.example:9090", false},
		{"bad", "127.0.0.1:9090", false},
		{"localhost:9090", "127.0.0.1:9090", true},
		{"[::1]:9090", "localhost:9090", false}, // Go listens on 127.0.0.1 for localhost
		{"127.0.0.1:9090", "[::ffff:127.0.0.1]:9090", true},
	} {
		if got := Loops(tc.listen, tc.target); got != tc.loops {
			t.Errorf("Loops(%q, %q) = %v, want %v", tc.listen, tc.target, got, tc.loops)
		}
	}
}
