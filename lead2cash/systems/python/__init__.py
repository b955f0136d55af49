"""The python system type."""
