package plugin_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a
// connection, a call watcher of wazero, a watchdog timer's callback).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
