# Function calls that fail.
plugin "p" {
  path = env("TUNNEL_TEST_UNSET_VARIABLE") # ERROR: Error in function call
}

route "a" {
  listen = "127.0.0.1:${nope}" # ERROR: Unknown variable
  target = "127.0.0.1:8080"
  chain {
    plugin = plugin.p
    config = { reply = file("no-such-file.txt") } # ERROR: Error in function call
  }
  chain {
    plugin = plugin.p
    config = { x = nosuchfunc(1) } # ERROR: Call to unknown function
  }
  chain {
    plugin = plugin.p
    config = { x = file("/dev/zero") } # ERROR: Error in function call
  }
}
