// Package plugstats lets the tests of this module see what a plugin runtime
// holds (compiled modules, plugins, live instances, the crash-loop breaker
// of a plugin), to catch leaks and check containment, without making that
// part of package plugin's API; internal/config also reads what the
// plugins of a runtime may still take (Held), to check a reload against
// plugin_memory_limit. Package plugin sets the functions when it is
// initialised.
package plugstats

import "time"

// Stats counts what a plugin runtime holds.
type Stats struct {
	Modules   int // compiled modules not yet released
	Plugins   int // plugins not yet closed
	Instances int // live instances over all plugins
}

// Breaker is the state of a plugin's crash-loop breaker.
type Breaker struct {
	Trips     int  // times the plugin tripped
	Refused   int  // connections refused (or bypassing the plugin) while it was tripped
	Tripped   bool // new connections are refused or bypass it now
	Probation bool // tripped, and no call has succeeded since
}

// Held is a plugin not yet closed that has open connections, and the
// memory its live instances may take.
type Held struct {
	Name        string
	Instances   int    // live instances
	MemoryLimit uint64 // per instance, bytes
	Conns       int    // open connections
}

var (
	// Runtime returns what rt, a *plugin.Runtime, holds now.
	Runtime func(rt any) Stats
	// Instances returns the number of live instances of p, a *plugin.Plugin.
	Instances func(p any) int
	// BreakerOf returns the crash-loop breaker of p, a *plugin.Plugin.
	BreakerOf func(p any) Breaker
	// SetClock makes p, a *plugin.Plugin, read the time from now (for its
	// breaker and log rate limit).
	SetClock func(p any, now func() time.Time)
	// HeldBy returns the plugins of rt, a *plugin.Runtime, that are not in
	// except (a set of *plugin.Plugin) and have open connections.
	HeldBy func(rt any, except map[any]bool) []Held
	// TimersDue returns the number of connections of p, a *plugin.Plugin
	// with an Options.Clock, whose guest timer is due at now (on that
	// clock) and has not fired yet (host/plugintest's Advance waits for
	// them).
	TimersDue func(p any, now time.Duration) int
)
