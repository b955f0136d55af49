"""The near-real-time billing summary per customer and currency (docs/usage.md, "The billing summary")."""
