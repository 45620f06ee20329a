# Names and addresses that clash, references to undefined plugins.
plugin "deny" {
  path = "deny.wasm"
}

plugin "deny" { # ERROR: Duplicate plugin
  path = "other.wasm"
}

plugin "spare" { # WARNING: Unused plugin
  path = "spare.wasm"
}

route "a" {
  listen = "127.0.0.1:9090"
  target = "127.0.0.1:8080"
  chain {
    plugin = plugin.dney # ERROR: Undefined plugin
  }
  chain {
    plugin = "denied" # ERROR: Undefined plugin
  }
  chain {
    plugin = plugin.deny
  }
}

route "a" { # ERROR: Duplicate route
  listen = "127.0.0.1:9091"
  target = "127.0.0.1:8080"
}

route "b" {
  listen = "127.0.0.1:9090" # ERROR: Duplicate listen address
  target = "127.0.0.1:8080"
}

route "c" {
  listen = "0.0.0.0:9092"
  target = "127.0.0.1:8080"
}

route "d" {
  listen = "[::1]:9092" # ERROR: Duplicate listen address
  target = "127.0.0.1:8080"
}

route "e" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:8080"
}

route "f" {
  listen = "127.0.0.1:0" # ERROR: Duplicate listen address
  target = "127.0.0.1:8080"
}

route "g" {
  listen = "[::1]:9096"
  target = "127.0.0.1:8080"
}

route "g2" {
  listen = "[0:0::1]:9096" # ERROR: Duplicate listen address
  target = "127.0.0.1:8080"
}

route "h" {
  listen = "localhost:9094"
  target = "127.0.0.1:8080"
}

route "i" {
  listen = "127.0.0.1:9094" # ERROR: Duplicate listen address
  target = "127.0.0.1:8080"
}

route "j" {
  listen = "0.0.0.0:9095"
  target = "localhost:9095" # ERROR: Invalid target address
}

route "k" {
  listen = "127.0.0.1:9097"
  target = "127.0.0.1:9098" # ERROR: Routes forward to each other
}

route "l" {
  listen = "127.0.0.1:9098"
  target = "[::ffff:127.0.0.1]:9097"
}
