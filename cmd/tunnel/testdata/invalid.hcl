# Every kind of problem tunnel validate reports, each marked where it is
# expected; invalid.golden holds the exact output.
plugin "stamp" {
  path      = "../../../internal/config/testdata/wasm/stamp.wasm"
  instances = 0 # ERROR: Value out of range
}

plugin "missing" {
  path = "no-such-plugin.wasm" # ERROR: Cannot read plugin file
}

plugin "garbage" {
  path = "../../../internal/config/testdata/wasm/garbage.wasm" # ERROR: Invalid plugin module
}

plugin "noexports" {
  path = "../../../internal/config/testdata/wasm/empty.wasm" # ERROR: Invalid plugin module
}

plugin "big" {
  path         = "../../../internal/config/testdata/wasm/big.wasm"
  memory_limit = "1MiB"
}

route "a" {
  listen  = "127.0.0.1:9090"
  target  = "127.0.0.1" # ERROR: Invalid target address
  timeout = "5s" # ERROR: Unsupported argument
  chain {
    plugin = plugin.stmp # ERROR: Undefined plugin
  }
  chain {
    plugin = plugin.stamp
    config = { say = "hello!" } # ERROR: Plugin rejected its config
  }
  chain {
    plugin = plugin.missing
  }
  chain {
    plugin = plugin.big # ERROR: Plugin failed to start
  }
}

route "b" {
  listen          = "127.0.0.1:9090" # ERROR: Duplicate listen address
  target          = "127.0.0.1:8080"
  max_connections = 5000000 # ERROR: Value out of range
  chain {
    plugin = plugin.garbage
  }
  chain {
    plugin = plugin.noexports
  }
}
