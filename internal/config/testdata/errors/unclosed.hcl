route "b" { # ERROR: Unclosed configuration block
  listen = "127.0.0.1:9091"
