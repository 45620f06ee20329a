# The capture block: a path Create accepts, sizes and counts in range.
route "a" {
  listen = "127.0.0.1:9090"
  target = "127.0.0.1:8080"
  capture {
    path      = "a-%Q.pcapng" # ERROR: Invalid capture path
    max_size  = "10KiB" # ERROR: Value out of range
    max_files = -1 # ERROR: Value out of range
  }
}

route "b" {
  listen = "127.0.0.1:9091"
  target = "127.0.0.1:8080"
  capture {
    path = "no-such-dir/b.pcapng" # ERROR: Invalid capture path
  }
}

route "c" {
  listen = "127.0.0.1:9092"
  target = "127.0.0.1:8080"
  capture { # ERROR: Missing required argument
    max_size = "1MB" # ERROR: Value out of range
  }
}

route "d" {
  listen = "127.0.0.1:9093"
  target = "127.0.0.1:8080"
  capture {
    path      = "%Y/d.pcapng" # ERROR: Invalid capture path
    max_files = 1.5 # ERROR: Invalid max_files
  }
}
