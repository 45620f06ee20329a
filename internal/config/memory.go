package config

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/plugstats"
)

// Bounds of plugin_memory_limit.
const (
	// MinDefaultPluginMemoryLimit is the least DefaultPluginMemoryLimit
	// returns: 1 GiB, eight of the default links (64 MiB × 2 instances on
	// a 2-CPU machine).
	MinDefaultPluginMemoryLimit = 1 << 30
	// MinPluginMemoryLimit and MaxPluginMemoryLimit bound it.
	MinPluginMemoryLimit = MinMemoryLimit
	MaxPluginMemoryLimit = 1 << 40
)

// DefaultPluginMemoryLimit is plugin_memory_limit when the file sets none:
// half the machine's memory (MemTotal in /proc/meminfo), and at least
// MinDefaultPluginMemoryLimit, so that the plugins alone can never take
// the machine while the tunnel, the kernel's socket buffers and the rest
// keep the other half.
func DefaultPluginMemoryLimit() uint64 {
	defaultLimitOnce.Do(func() {
		defaultLimit = MinDefaultPluginMemoryLimit
		b, err := os.ReadFile("/proc/meminfo")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err == nil {
					defaultLimit = max(defaultLimit, kb<<10/2&^(1<<20-1)) // whole MiB
				}
			}
		}
	})
	return defaultLimit
}

var (
	defaultLimitOnce sync.Once
	defaultLimit     uint64
)

// linkMemory is what one chain link's plugin may take: instances ×
// memory_limit, with the runtime's defaults.
func linkMemory(p *Plugin) (instances int, limit uint64) {
	instances, limit = p.Instances, p.MemoryLimit
	if instances == 0 {
		instances = runtime.GOMAXPROCS(0)
	}
	if limit == 0 {
		limit = plugin.DefaultMemoryLimit
	}
	return instances, limit
}

// PluginMemory returns the most memory the plugins of f may take together
// (memory_limit × instances over every chain link of every route), and
// the limit that applies (plugin_memory_limit).
func (f *File) PluginMemory() (total, limit uint64) {
	for _, r := range f.Routes {
		for _, l := range r.Chain {
			if p := f.Plugin(l.Plugin); p != nil {
				n, m := linkMemory(p)
				total += uint64(n) * m
			}
		}
	}
	limit = f.PluginMemoryLimit
	if limit == 0 {
		limit = DefaultPluginMemoryLimit()
	}
	return total, limit
}

// checkMemory reports a file whose plugins may take more than
// plugin_memory_limit, counting, besides the file's own chain links, what
// held says the plugins of the running and earlier configurations keep
// while their connections are open (nil when nothing runs yet). The
// diagnostic names every link and its share.
func checkMemory(f *File, held []plugstats.Held) *hcl.Diagnostic {
	total, limit := f.PluginMemory()
	var kept uint64
	for _, h := range held {
		kept += uint64(h.Instances) * h.MemoryLimit
	}
	if total+kept <= limit {
		return nil
	}
	var parts []string
	var largest *Plugin
	var largestMem uint64
	for _, r := range f.Routes {
		for _, l := range r.Chain {
			p := f.Plugin(l.Plugin)
			if p == nil {
				continue
			}
			n, m := linkMemory(p)
			parts = append(parts, fmt.Sprintf("route %q plugin %q %d × %s", r.Name, p.Name, n, FormatSize(m)))
			if uint64(n)*m > largestMem {
				largest, largestMem = p, uint64(n)*m
			}
		}
	}
	detail := fmt.Sprintf("The plugins may take %s (%s)", FormatSize(total), strings.Join(parts, ", "))
	if kept > 0 {
		var hs []string
		for _, h := range held {
			hs = append(hs, fmt.Sprintf("plugin %q %d × %s for %d connection(s)", h.Name, h.Instances, FormatSize(h.MemoryLimit), h.Conns))
		}
		detail += fmt.Sprintf(", and the running configuration's plugins keep %s until their connections end (%s): %s in all", FormatSize(kept), strings.Join(hs, ", "), FormatSize(total+kept))
	}
	detail += fmt.Sprintf(", more than plugin_memory_limit = %q. Lower memory_limit or instances, or raise plugin_memory_limit.", FormatSize(limit))
	rng := hcl.Range{Filename: f.Path, Start: hcl.InitialPos, End: hcl.InitialPos}
	switch {
	case f.PluginMemoryLimitRange != nil:
		rng = *f.PluginMemoryLimitRange
	case largest != nil:
		rng = largest.DeclRange
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Plugin memory over the limit", Detail: detail, Subject: &rng}
}

// pluginMemory reads plugin_memory_limit and checks the file's plugins
// against it.
func (d *decoder) pluginMemory(expr hcl.Expression) {
	if expr == nil {
		return
	}
	if _, absent := d.absent(expr); !absent {
		v, ok := d.size(expr, "plugin_memory_limit", MinPluginMemoryLimit, MaxPluginMemoryLimit)
		if !ok {
			return
		}
		rng := expr.Range()
		d.file.PluginMemoryLimit, d.file.PluginMemoryLimitRange = v, &rng
	}
	if diag := checkMemory(d.file, nil); diag != nil {
		d.diags = append(d.diags, diag)
	}
}
