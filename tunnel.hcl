# tunnel.hcl: what `tunnel` runs when started without arguments in this directory.
# Check it with `tunnel validate`; edit it while the tunnel runs and it reloads by itself
# (or on SIGHUP), keeping the running configuration if the edit has errors.
#
# Plugins are Go programs compiled to WebAssembly. The ones in plugins/ are built into the
# tunnel (`tunnel plugins` lists them): `builtin = "resp"` needs no file. For your own,
# write `path = "my.wasm"` (relative to this file) instead.

plugin "resp" {
  builtin      = "resp"  # plugins/resp, compiled into the tunnel
  memory_limit = "64MiB" # per instance; a standard-Go guest needs about 3.5 MiB
  call_timeout = "1s"    # a slower call fails, and on_failure applies
  on_failure   = "close" # or "bypass": forward as if the plugin were absent
  instances    = 2       # instances shared by the connections
}

# A Redis where the commands that wipe or replace its data are refused (FLUSHALL, FLUSHDB,
# CONFIG SET, and the scripts, functions and replication that could run or do the same):
# the plugin parses the Redis protocol (pipelined, split, inline), the client gets an error
# reply in the place of the command's reply and keeps its connection; the server never sees
# the command. For a server that must not lose data, an `allow` list is the safer shape.
route "redis" {
  listen          = "127.0.0.1:7379"
  target          = env("REDIS_ADDR", "127.0.0.1:6379")
  idle_timeout    = "5m"
  max_connections = 1000

  chain {
    plugin = plugin.resp # both directions: it reads the replies to put its errors in place
    config = {
      block = [
        "FLUSHALL", "FLUSHDB", "CONFIG SET", "DEBUG", "SHUTDOWN",
        "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO", "FUNCTION", "SCRIPT",
        "REPLICAOF", "SLAVEOF", "MODULE", "MIGRATE", "RESTORE", "SWAPDB",
      ]
      error = "ERR command '{command}' is not allowed by the tunnel"
    }
  }
}

# The plain mode as a route: forward 9090 to 8080 and print every chunk on stdout as text.
route "echo" {
  listen = "127.0.0.1:9090"
  target = "127.0.0.1:8080"

  dump {
    format = "text"
  }
}
