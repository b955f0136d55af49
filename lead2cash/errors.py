"""Error classes every connector raises and the router acts on (Camel's dead letter channel needs to know
which). Neutral ground: connectors and routes both import it, neither imports the other."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # retry with backoff
    THROTTLED = "throttled"  # back off for Retry-After and pause the route
    PERMANENT = "permanent"  # dead letter with the reason and the original payload


class DeliveryError(Exception):
    """Raised by a target. ``details`` must never carry secrets: it is stored in the dead letter."""

    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.details = details or {}

    def describe(self) -> str:
        if not self.details:
            return self.message
        extra = "; ".join(f"{k}={v}" for k, v in sorted(self.details.items()))
        return f"{self.message} ({extra})"


class TransientError(DeliveryError):
    error_class = ErrorClass.TRANSIENT


class ThrottledError(DeliveryError):
    error_class = ErrorClass.THROTTLED


class PermanentError(DeliveryError):
    error_class = ErrorClass.PERMANENT
