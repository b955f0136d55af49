"""The router: route runtime, triggers' entry points, mapping, retry policy and error classes."""
