# A reply toward a direction that no link sees is spliced away: never delivered.
plugin "deny" {
  path = "deny.wasm"
}
plugin "noop" {
  path = "noop.wasm"
}

route "lost_to_client" {
  listen = "127.0.0.1:7001"
  target = "127.0.0.1:6379"
  chain {
    plugin     = plugin.deny
    directions = "client_to_server" # ERROR: Reply cannot reach the sender
    config     = { pattern = "FLUSHALL\r\n", reply = "-ERR no\r\n" }
  }
}

route "lost_to_server" {
  listen = "127.0.0.1:7002"
  target = "127.0.0.1:6379"
  chain {
    plugin     = plugin.deny
    directions = "server_to_client" # ERROR: Reply cannot reach the sender
    config     = jsondecode("{\"pattern\": \"x\", \"reply\": \"stop\", \"action\": \"close\"}")
  }
  chain {
    plugin     = plugin.noop
    directions = "server_to_client"
  }
}

# Something else sees the other direction: the reply gets through.
route "dump" {
  listen = "127.0.0.1:7003"
  target = "127.0.0.1:6379"
  dump {}
  chain {
    plugin     = plugin.deny
    directions = "client_to_server"
    config     = { pattern = "x", reply = "no" }
  }
}

route "other_link" {
  listen = "127.0.0.1:7004"
  target = "127.0.0.1:6379"
  chain {
    plugin     = plugin.deny
    directions = "client_to_server"
    config     = { pattern = "x", reply = "no" }
  }
  chain {
    plugin = plugin.noop
  }
}

route "proxy_header" {
  listen         = "127.0.0.1:7005"
  target         = "127.0.0.1:6379"
  proxy_protocol = true
  chain {
    plugin     = plugin.deny
    directions = "server_to_client"
    config     = { pattern = "x", reply = "no" }
  }
}

# Both directions (the default), or nothing to reply.
route "fine" {
  listen = "127.0.0.1:7006"
  target = "127.0.0.1:6379"
  chain {
    plugin = plugin.deny
    config = { pattern = "x", reply = "no", from = "client" }
  }
  chain {
    plugin     = plugin.deny
    directions = "client_to_server"
    config     = { pattern = "x", reply = "" }
  }
  chain {
    plugin     = plugin.deny
    directions = "client_to_server"
    config     = { pattern = "x" }
  }
}
