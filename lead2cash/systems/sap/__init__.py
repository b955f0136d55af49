"""The sap system type."""
