"""Plain-Python warehouse layer: DDL, connections, the embedded server, the load algorithm."""
