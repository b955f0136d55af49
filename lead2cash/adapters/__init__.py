"""Adapters: system record <-> canonical model. Pure functions, no I/O."""
