package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// pluginSource reads a plugin block's module: exactly one of path (a .wasm
// file, resolved against the config file's directory) and builtin (a
// plugin compiled into the tunnel, see package plugins/builtin).
func (d *decoder) pluginSource(pb *pluginBody, p *Plugin) {
	_, noPath := d.absent(pb.Path)
	_, noBuiltin := d.absent(pb.Builtin)
	switch {
	case noPath && noBuiltin:
		example := `path = "plugins/` + pb.Name + `.wasm"`
		if builtin.Description(pb.Name) != "" {
			example = fmt.Sprintf("builtin = %q", pb.Name)
		}
		d.errorf(pb.Path.Range(), "Missing required argument",
			"Plugin %q needs path (a .wasm file, relative to this file) or builtin (one of %s); add for example %s.",
			pb.Name, quoteList(builtin.Names()), example)
	case !noPath && !noBuiltin:
		d.errorf(pb.Builtin.Range(), "Conflicting arguments",
			"Plugin %q has both path and builtin; keep path for a .wasm file, or builtin for a plugin compiled into the tunnel.", pb.Name)
	case !noBuiltin:
		p.PathRange = pb.Builtin.Range()
		name, ok := d.str(pb.Builtin, "builtin")
		if !ok {
			return
		}
		if builtin.Description(name) == "" {
			hint := "; use one of " + quoteList(builtin.Names()) + "."
			if s := nameSuggestion(name, builtin.Names()); s != "" {
				hint = fmt.Sprintf(". Did you mean %q?", s)
			}
			d.errorf(pb.Builtin.Range(), "Unknown built-in plugin", "builtin = %q is not a plugin compiled into the tunnel%s", name, hint)
			return
		}
		p.Builtin = name
	default:
		path, ok := d.str(pb.Path, "path")
		if !ok {
			return
		}
		if path == "" {
			d.errorf(pb.Path.Range(), "Invalid path", "path is empty; name the plugin's .wasm file, relative to this file.")
			return
		}
		if isURL(path) {
			d.pluginURL(pb, p, path)
			return
		}
		p.Path = d.resolve(path)
		d.checkLocalSHA256(pb, p)
	}
	if _, absent := d.absent(pb.SHA256); !absent && p.Builtin != "" {
		d.errorf(pb.SHA256.Range(), "sha256 of a built-in plugin", "Plugin %q is built into the tunnel; sha256 checks the module of a path. Remove sha256.", pb.Name)
	}
}

// hasModule reports whether p names a module to compile: a path or a
// built-in plugin.
func (p *Plugin) hasModule() bool { return p.Path != "" || p.Builtin != "" }

// moduleKey identifies p's module in the Builder's cache of compiled
// modules: its file's path, or builtin:NAME.
func (p *Plugin) moduleKey() string {
	if p.Builtin != "" {
		return builtin.Prefix + p.Builtin
	}
	return p.Path
}

// readBuiltin returns the module of a built-in plugin as a diagnostic at its
// builtin attribute when it cannot be had (a binary built without it).
func readBuiltin(p *Plugin) ([]byte, hcl.Diagnostics) {
	wasm, err := builtin.Wasm(p.Builtin)
	if err != nil {
		rng := p.PathRange
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot load built-in plugin", Detail: fmt.Sprintf("Plugin %q: %v.", p.Name, err), Subject: &rng}}
	}
	return wasm, nil
}
