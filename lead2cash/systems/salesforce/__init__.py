"""The salesforce system type."""
