"""The file system type."""
