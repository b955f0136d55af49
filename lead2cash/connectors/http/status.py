"""HTTP status → the hub's error class, declared once per system as a table (not as if-chains in each
connector). What a table cannot say (a body's error code, a session to refresh) stays in the connector,
before it consults the table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lead2cash.errors import DeliveryError, PermanentError, ThrottledError, TransientError


class NotFound(PermanentError):
    """404: permanent, and its own class, so a caller that looks something up can catch it alone."""


@dataclass(frozen=True)
class StatusTable:
    """``statuses`` for the codes a system gives a meaning of its own; any other 5xx is ``server_error``,
    anything else (a 4xx, or no status) ``otherwise``. ``waits``: the pause a status asks for when the
    server names none (a revoked key: retry in a minute, not at once)."""

    system: str
    statuses: Mapping[int, type[DeliveryError]] = field(default_factory=dict)
    server_error: type[DeliveryError] = TransientError
    otherwise: type[DeliveryError] = PermanentError
    waits: Mapping[int, float] = field(default_factory=dict)

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
        if retry_after is None and status is not None:
            retry_after = self.waits.get(status)
        wait = None if issubclass(cls, PermanentError) else retry_after
        return cls(message, retry_after=wait, details=details)


# 408 Request Timeout and 425 Too Early: the request was not processed; sending it again is safe.
SAP_ODATA = StatusTable("sap-odata", {408: TransientError, 425: TransientError, 429: ThrottledError})
SAP_SOAP = StatusTable("sap-soap", {408: TransientError, 425: TransientError, 429: ThrottledError})

# Lago: 422 (validation) and 400/403/405/409 are permanent; a 401 is a revoked or mistyped api key, which
# an operator fixes: the route pauses a minute instead of dead-lettering everything it holds.
LAGO = StatusTable(
    "lago",
    {401: ThrottledError, 404: NotFound, 429: ThrottledError},
    waits={401: 60.0},
)

# Salesforce: its error codes decide first and a 401 is a session to refresh
# (connectors/salesforce/errors.py); by status alone 429 and 503 are throttling, any other 5xx transient, a 4xx permanent.
SALESFORCE = StatusTable("salesforce", {429: ThrottledError, 503: ThrottledError})
