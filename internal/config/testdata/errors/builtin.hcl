# A plugin block names its module with exactly one of path and builtin.
plugin "deny" {
  builtin = "deny"
}
plugin "both" {
  path    = "deny.wasm"
  builtin = "deny" # ERROR: Conflicting arguments
}
plugin "neither" { # ERROR: Missing required argument
  instances = 2
}
plugin "typo" {
  builtin = "dney" # ERROR: Unknown built-in plugin
}
plugin "unknown" {
  builtin = "firewall" # ERROR: Unknown built-in plugin
}
plugin "number" {
  builtin = ["deny"] # ERROR: Incorrect attribute value type
}

route "r" {
  listen = "127.0.0.1:7001"
  target = "127.0.0.1:6379"
  chain {
    plugin = plugin.deny
  }
  chain {
    plugin = plugin.both
  }
  chain {
    plugin = plugin.neither
  }
  chain {
    plugin = plugin.typo
  }
  chain {
    plugin = plugin.unknown
  }
  chain {
    plugin = plugin.number
  }
}
