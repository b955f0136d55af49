"""Connectors: transport only (auth, sessions, pagination, rate limits, error classification)."""
