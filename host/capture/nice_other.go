//go:build !linux

package capture

// lowerPriority does nothing outside Linux: thread priorities are not per
// thread there, or not settable without privileges.
func lowerPriority() (undo func()) { return func() {} }
