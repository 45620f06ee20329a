# A valid file: tunnel validate exits 0.
plugin "stamp" {
  path         = "../../../internal/config/testdata/wasm/stamp.wasm"
  memory_limit = "1MiB"
  call_timeout = "100ms"
  instances    = 1
}

route "echo" {
  listen = "127.0.0.1:0"
  target = env("TUNNEL_TEST_TARGET", "127.0.0.1:7")
  dump {
    format = "text"
  }
  chain {
    plugin = plugin.stamp
    config = { tag = "ok" }
  }
}
