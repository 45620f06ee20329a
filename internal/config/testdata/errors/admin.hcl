# The admin block: the admin endpoint's address, pprof and drain_delay.
admin {
  listen      = ":9901" # ERROR: Invalid admin address
  pprof       = "yes please" # ERROR: Incorrect attribute value type
  drain_delay = "10m" # ERROR: Value out of range
}

route "a" {
  listen = "127.0.0.1:9902"
  target = "127.0.0.1:8080"
}
