"""Legacy billing migration: profile, map, cleanse, validate with quality gates, load into Lago exactly once
through the hub's effect ledger, and roll back. The mapping is configuration (``config/migration/*.yaml``);
Polars runs every table-wide step, lazily where the check allows it."""
