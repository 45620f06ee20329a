# A syntax error stops the parse: nothing after it is checked.
route "a" {
  listen = "127.0.0.1:9090"
  target = 127.0.0.1:8080 # ERROR: Invalid number literal # ERROR: Missing newline after argument
  colour = 1
}
