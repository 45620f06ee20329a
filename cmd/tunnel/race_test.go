//go:build race

package main

// raceEnabled: the tests were built with -race, and so is the binary
// TestMain builds.
const raceEnabled = true
