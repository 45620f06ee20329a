# One admin block at most.
admin {
  listen = "127.0.0.1:9901"
}

admin { # ERROR: Duplicate admin block
  pprof = true
}

route "a" {
  listen = "127.0.0.1:9902"
  target = "127.0.0.1:8080"
}
