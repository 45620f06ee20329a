# One port for SSH, HTTP and TLS, like sslh: the built-in router plugin reads the first bytes
# of each connection and chooses its target (plugins/router/README.md).
#
#   go run ./cmd/tunnel --config examples/router/tunnel.hcl
#   ssh -p 7443 you@127.0.0.1                                          # -> ROUTER_SSH
#   curl http://127.0.0.1:7443/                                        # -> ROUTER_HTTP
#   openssl s_client -connect 127.0.0.1:7443 -servername app.example.test  # -> ROUTER_TLS_APPS
#   openssl s_client -connect 127.0.0.1:7443 -servername other.test        # -> ROUTER_TLS
#
# The router does not terminate TLS: each TLS server has its own certificate.

locals {
  ssh      = env("ROUTER_SSH", "127.0.0.1:22")
  http     = env("ROUTER_HTTP", "127.0.0.1:8080")
  tls_apps = env("ROUTER_TLS_APPS", "127.0.0.1:8443")
  tls      = env("ROUTER_TLS", "127.0.0.1:9443")
}

plugin "router" {
  builtin = "router"
}

route "front" {
  listen = env("ROUTER_LISTEN", "127.0.0.1:7443")
  dial   = "plugin" # the router chooses the target

  chain {
    plugin     = plugin.router
    directions = "client_to_server" # it reads what the client sends first
    config = {
      rules = [
        { protocol = "ssh", target = local.ssh },
        { protocol = "tls", name = "*.example.test", target = local.tls_apps },
        { protocol = "tls", target = local.tls },
        { protocol = "http", target = local.http },
      ]
      default = local.http # anything else, and clients that wait for the server to speak
      timeout = "3s"
    }
  }
}
