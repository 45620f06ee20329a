# An admin endpoint on every interface is allowed, written out, with a
# warning; on a route's port it is an error.
admin {
  listen = "0.0.0.0:9901" # WARNING: Admin endpoint reachable from other machines # ERROR: Duplicate listen address
  pprof  = true
  port   = 9901 # ERROR: Unsupported argument
}

route "a" {
  listen = "127.0.0.1:9901"
  target = "127.0.0.1:8080"
}
