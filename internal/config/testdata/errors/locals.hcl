# locals: values defined once, used as local.NAME, in source order.
locals {
  host = "127.0.0.1"
  port = local.later # ERROR: Local value used before its definition
  bad  = env("TUNNEL_TEST_UNSET_VARIABLE") # ERROR: Error in function call
}

locals {
  host = "::1" # ERROR: Duplicate local value
  later = 1
}

route "a" {
  listen = "${local.host}:${local.port}"
  target = local.bad
}

route "b" {
  listen = local.nope # ERROR: Unsupported attribute
  target = "${local.host}:8080"
}
