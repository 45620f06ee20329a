//go:build race

package testkit

// Race reports whether this test binary was built with -race.
const Race = true
