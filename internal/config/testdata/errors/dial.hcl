# dial = "plugin": a plugin of the chain chooses the target, which is then optional.
plugin "router" {
  path = "router.wasm"
}

route "ok" {
  listen = "127.0.0.1:9090"
  dial   = "plugin"
  chain {
    plugin = "router"
  }
}

route "nochain" {
  listen = "127.0.0.1:9091"
  dial   = "plugin" # ERROR: Invalid dial
}

route "typo" {
  listen = "127.0.0.1:9092"
  target = "127.0.0.1:8080"
  dial   = "plugins" # ERROR: Invalid dial
}

route "notarget" { # ERROR: Missing required argument
  listen = "127.0.0.1:9093"
  dial   = "target"
}
