package addr

import (
	"strings"
	"testing"
)

func TestExposed(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		exposed bool
		err     string
	}{
		{"127.0.0.1:9901", false, ""},
		{"127.1.2.3:0", false, ""},
		{"[::1]:9901", false, ""},
		{"localhost:9901", false, ""},
		{"LocalHost:9901", false, ""},
		{"0.0.0.0:9901", true, ""},
		{"[::]:9901", true, ""},
		{"10.0.0.5:9901", true, ""},
		{"admin.example:9901", true, ""},
		{":9901", false, `address ":9901" has no host, which listens on every interface; write 127.0.0.1:9901 for this machine only, or 0.0.0.0:9901 to expose it on purpose`},
		{"127.0.0.1", false, "missing port"},
		{"", false, "address is empty"},
	} {
		exposed, err := Exposed(tc.addr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Exposed(%q): %v, want an error containing %q", tc.addr, err, tc.err)
			}
			continue
		}
		if err != nil || exposed != tc.exposed {
			t.Errorf("Exposed(%q) = %v, %v; want %v", tc.addr, exposed, err, tc.exposed)
		}
	}
}
