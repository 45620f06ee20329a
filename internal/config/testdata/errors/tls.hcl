# TLS termination, upstream TLS, SNI routing and PROXY-in settings.
route "missing" {
  listen = "127.0.0.1:9100"
  target = "127.0.0.1:8080"
  tls { # ERROR: Missing required argument # ERROR: Missing required argument
    min_version = "1.1" # ERROR: Invalid min_version
    alpn        = ["h2", ""] # ERROR: Invalid alpn
  }
}

route "mtls" {
  listen = "127.0.0.1:9101"
  target = "127.0.0.1:8080"
  tls {
    cert      = "cert.pem"
    key       = "key.pem"
    client_ca = "ca.pem" # ERROR: Mutual TLS without allow rules
  }
}

route "allow" {
  listen = "127.0.0.1:9102"
  target = "127.0.0.1:8080"
  tls {
    cert                = "cert.pem"
    key                 = "key.pem"
    require_client_cert = true # ERROR: require_client_cert needs client_ca
    allow { # ERROR: allow needs client_ca
      cn = ["alice"]
    }
  }
}

route "rules" {
  listen = "127.0.0.1:9103"
  target = "127.0.0.1:8080"
  tls {
    cert      = "cert.pem"
    key       = "key.pem"
    client_ca = "ca.pem"
    key_log   = "keys.log" # WARNING: key_log records secrets
    allow {
      dns         = ["ok.example", "*"] # ERROR: Invalid allow rule
      uri         = ["not a uri"] # ERROR: Invalid allow rule
      spki_sha256 = ["abcd"] # ERROR: Invalid allow rule
    }
  }
}

route "empty_allow" {
  listen = "127.0.0.1:9104"
  target = "127.0.0.1:8080"
  tls {
    cert      = "cert.pem"
    key       = "key.pem"
    client_ca = "ca.pem"
    allow {} # ERROR: Empty allow block
  }
}

route "upstream" {
  listen = "127.0.0.1:9105"
  target = "127.0.0.1:8443"
  upstream_tls {
    server_name          = "*.example" # ERROR: Invalid server_name
    cert                 = "client.pem" # ERROR: cert without key
    insecure_skip_verify = true # WARNING: Target certificate not verified
  }
}

route "proxy" {
  listen       = "127.0.0.1:9106"
  target       = "127.0.0.1:8080"
  accept_proxy = true # ERROR: Missing trusted_cidrs
}

route "cidrs" {
  listen            = "127.0.0.1:9107"
  target            = "127.0.0.1:8080"
  accept_proxy      = true
  trusted_cidrs     = ["10.0.0.0/8", "192.0.2.7", "10.0.0.0/33"] # ERROR: Invalid trusted_cidrs
  handshake_timeout = "0s" # ERROR: Value out of range
}

route "useless" {
  listen            = "127.0.0.1:9108"
  target            = "127.0.0.1:8080"
  trusted_cidrs     = ["10.0.0.0/8"] # WARNING: trusted_cidrs has no effect
  handshake_timeout = "5s" # WARNING: handshake_timeout has no effect
}

route "sni_a" {
  listen       = "127.0.0.1:9443"
  target       = "127.0.0.1:8001"
  server_names = ["a.example", "*.b.example", "A.example"] # ERROR: Duplicate server name
}

route "sni_b" {
  listen       = "127.0.0.1:9443"
  target       = "127.0.0.1:8002"
  server_names = ["*", "a.example", "bad name", "x.*.example"] # ERROR: Duplicate server name # ERROR: Invalid server name # ERROR: Invalid server name
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}

route "sni_c" {
  listen       = "127.0.0.1:9443"
  target       = "127.0.0.1:8003"
  server_names = ["c.example", "*"] # ERROR: Duplicate server name
  accept_proxy = true # ERROR: Routes sharing an address disagree on accept_proxy
  trusted_cidrs = ["127.0.0.1"]
}

route "sni_plain" {
  listen = "127.0.0.1:9443" # ERROR: Shared listen address without server_names
  target = "127.0.0.1:8004"
}

route "sni_empty" {
  listen       = "127.0.0.1:9444"
  target       = "127.0.0.1:8004"
  server_names = [] # ERROR: Empty server_names
}
