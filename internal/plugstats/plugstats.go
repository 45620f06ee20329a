// Package plugstats lets the tests of this module see what a plugin runtime
// holds (compiled modules, plugins, live instances), to catch leaks, without
// making that part of package plugin's API. Package plugin sets Runtime and
// Instances when it is initialised.
package plugstats

// Stats counts what a plugin runtime holds.
type Stats struct {
	Modules   int // compiled modules not yet released
	Plugins   int // plugins not yet closed
	Instances int // live instances over all plugins
}

var (
	// Runtime returns what rt, a *plugin.Runtime, holds now.
	Runtime func(rt any) Stats
	// Instances returns the number of live instances of p, a *plugin.Plugin.
	Instances func(p any) int
)
