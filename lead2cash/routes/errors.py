"""Errors the router acts on: delivery error classes (shared with connectors) and mapping errors."""

from __future__ import annotations

from lead2cash.errors import DeliveryError, ErrorClass, PermanentError, ThrottledError, TransientError

__all__ = [
    "DeliveryError",
    "ErrorClass",
    "MappingError",
    "PermanentError",
    "ThrottledError",
    "TransientError",
]


class MappingError(ValueError):
    """A source record that cannot become a canonical entity; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
