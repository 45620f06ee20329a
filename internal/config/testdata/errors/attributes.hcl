# Unknown and misspelt attributes and blocks, wrong types, missing arguments.
plugin "p" {
  path       = "p.wasm"
  colour     = "red" # ERROR: Unsupported argument
  instances  = "four" # ERROR: Incorrect attribute value type
  trusted    = "maybe" # ERROR: Incorrect attribute value type
}

plugin "nopath" { # ERROR: Missing required argument # WARNING: Unused plugin
}

route "a" { # ERROR: Missing required argument
  listne = "127.0.0.1:9090" # ERROR: Unsupported argument
  target = ["127.0.0.1:8080"] # ERROR: Incorrect attribute value type
  chain {
    plugin = "p"
    directions = 1 # ERROR: Invalid directions
  }
  chain { # ERROR: Missing required argument
    config = {}
  }
  dumps { # ERROR: Unsupported block type
  }
}

route { # ERROR: Missing name for route
  listen = "127.0.0.1:9091"
  target = "127.0.0.1:8080"
}

server "x" { # ERROR: Unsupported block type
}
