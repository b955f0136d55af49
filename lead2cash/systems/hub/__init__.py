"""The hub system type."""
