# A route whose plugin chooses the target never dials its target: no loop
# (listed first, the search would find it first).
plugin "router" {
  builtin = "router"
}

route "front" {
  listen = "127.0.0.1:9101"
  dial   = "plugin"
  target = "127.0.0.1:9102"
  chain {
    plugin     = plugin.router
    directions = "client_to_server"
    config = {
      rules = [{ protocol = "http", target = "127.0.0.1:8080" }]
    }
  }
}

route "back" {
  listen = "127.0.0.1:9102"
  target = "127.0.0.1:9101"
}

# Routes that forward to each other through a route chosen by server name:
# a client that sends b.example goes round; other names reach the default.
route "m" {
  listen = "127.0.0.1:9099"
  target = "127.0.0.1:9100" # ERROR: Routes forward to each other
}

route "n1" {
  listen       = "127.0.0.1:9100"
  server_names = ["b.example"]
  target       = "127.0.0.1:9099"
}

route "n2" {
  listen       = "127.0.0.1:9100"
  server_names = ["*"]
  target       = "127.0.0.1:8443"
}
