"""HTTP status → the hub's error class, declared once per system as a table (not as if-chains in each
connector). What a table cannot say (a body's error code, a session to refresh) stays in the connector,
before it consults the table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lead2cash.errors import DeliveryError, PermanentError, ThrottledError, TransientError


@dataclass(frozen=True)
class StatusTable:
    """``statuses`` for the codes a system gives a meaning of its own; any other 5xx is ``server_error``,
    anything else (a 4xx, or no status) ``otherwise``."""

    system: str
    statuses: Mapping[int, type[DeliveryError]] = field(default_factory=dict)
    server_error: type[DeliveryError] = TransientError
    otherwise: type[DeliveryError] = PermanentError

    def error_class(self, status: int | None) -> type[DeliveryError]:
        if status is None:
            return self.otherwise
        if status in self.statuses:
            return self.statuses[status]
        return self.server_error if status >= 500 else self.otherwise

    def error(
        self,
        status: int | None,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> DeliveryError:
        """The error for ``status``; a permanent one carries no Retry-After (nothing will be retried)."""
        cls = self.error_class(status)
        wait = None if issubclass(cls, PermanentError) else retry_after
        return cls(message, retry_after=wait, details=details)


# 408 Request Timeout and 425 Too Early: the request was not processed; sending it again is safe.
SAP_ODATA = StatusTable("sap-odata", {408: TransientError, 425: TransientError, 429: ThrottledError})
SAP_SOAP = StatusTable("sap-soap", {408: TransientError, 425: TransientError, 429: ThrottledError})
