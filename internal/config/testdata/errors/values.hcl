# Values out of range or malformed.
plugin "p" {
  path         = "p.wasm"
  memory_limit = "9GiB" # ERROR: Value out of range
  call_timeout = "fast" # ERROR: Invalid duration
  max_output   = "1KiB" # ERROR: Value out of range
  on_failure   = "explode" # ERROR: Invalid on_failure
  instances    = 0 # ERROR: Value out of range
}

plugin "q" {
  path         = "" # ERROR: Invalid path
  memory_limit = "64 megabytes" # ERROR: Invalid size
  call_timeout = "2h" # ERROR: Value out of range
  max_output   = 4096 # ERROR: Invalid size
  instances    = 1.5 # ERROR: Invalid instances
}

route "a" {
  listen          = "127.0.0.1" # ERROR: Invalid listen address
  target          = "example.com:http" # ERROR: Invalid target address
  dial_timeout    = "0s" # ERROR: Value out of range
  idle_timeout    = "-1m" # ERROR: Value out of range
  max_connections = -1 # ERROR: Value out of range
  dump {
    format = "binary" # ERROR: Invalid format
  }
  chain {
    plugin = plugin.p
  }
  chain {
    plugin = plugin.q
  }
}

route "b" {
  listen          = "127.0.0.1:70000" # ERROR: Invalid listen address
  target          = "127.0.0.1:0" # ERROR: Invalid target address
  max_connections = 2000000 # ERROR: Value out of range
}

plugin "t" {
  path         = "t.wasm"
  trusted      = true
  call_timeout = "100ms" # WARNING: call_timeout has no effect
}

route "c" {
  listen = "127.0.0.1:9092"
  target = "127.0.0.1:8080"
  chain {
    plugin = plugin.t
  }
}
