//go:build !linux

package host

// migratesRequests reports false: only Linux hands a closing listener's
// queue to another.
func migratesRequests() bool { return false }
