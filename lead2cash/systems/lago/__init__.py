"""The lago system type."""
