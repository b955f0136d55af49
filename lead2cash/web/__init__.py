"""The hub's web face: webhook receivers, health, metrics and the admin API."""
