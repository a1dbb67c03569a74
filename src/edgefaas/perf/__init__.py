"""Performance suites and their combined report (`edgefaas perf`)."""
