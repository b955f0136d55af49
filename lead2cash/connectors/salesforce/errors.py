"""Salesforce error codes -> the hub's error classes.

Salesforce answers errors as ``[{"errorCode": ..., "message": ..., "fields": [...]}]`` for a whole request,
and as ``{"success": false, "errors": [{"statusCode": ..., "message": ..., "fields": [...]}]}`` per record
in collections. Both are classified here so a request and a record failing for the same reason are treated
the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lead2cash.connectors.http import SALESFORCE
from lead2cash.errors import DeliveryError, PermanentError, ThrottledError, TransientError

THROTTLED_WAIT_S = 5.0  # a throttled answer that names no Retry-After

THROTTLED_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "API_CURRENTLY_DISABLED"})
TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "UNKNOWN_EXCEPTION",
        "INVALID_QUERY_LOCATOR",
        "QUERY_TIMEOUT",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "PROCESSING_HALTED",
    }
)
SESSION_CODES = frozenset({"INVALID_SESSION_ID", "INVALID_AUTH_HEADER"})


def error_items(content: Any) -> list[Mapping[str, Any]]:
    if isinstance(content, list):
        return [c for c in content if isinstance(c, Mapping)]
    if isinstance(content, Mapping):
        if isinstance(content.get("errors"), list):
            return [c for c in content["errors"] if isinstance(c, Mapping)]
        return [content]
    return []


def _code(item: Mapping[str, Any]) -> str:
    return str(item.get("errorCode") or item.get("statusCode") or "")


def _details(items: Iterable[Mapping[str, Any]], status: int | None) -> dict[str, Any]:
    items = list(items)
    fields = sorted({str(f) for i in items for f in (i.get("fields") or [])})
    details: dict[str, Any] = {
        "errorCode": ",".join(dict.fromkeys(_code(i) for i in items if _code(i))) or "unknown",
        "message": "; ".join(str(i.get("message", ""))[:300] for i in items if i.get("message")),
    }
    if fields:
        details["fields"] = ",".join(fields)
    if status is not None:
        details["status"] = status
    return details


def daily_limit_spent(status: int | None, codes: set[str]) -> bool:
    """403 REQUEST_LIMIT_EXCEEDED: the org's allocation is spent (a 429 is rate limiting, with Retry-After)."""
    return "REQUEST_LIMIT_EXCEEDED" in codes and status != 429


def codes_of(content: Any) -> set[str]:
    return {_code(i) for i in error_items(content)}


def classify(
    status: int | None,
    content: Any,
    *,
    retry_after: float | None = None,
    limit_retry_after: float = 300.0,
    what: str = "Salesforce request",
) -> DeliveryError:
    """The hub error for a failed request (``status``) or a failed record (``status=None``)."""
    items = error_items(content)
    codes = {_code(i) for i in items}
    details = _details(items, status)
    if daily_limit_spent(status, codes):
        # The daily allocation (or a concurrency limit) is spent: pause for long, keep the work.
        return ThrottledError(
            f"{what}: API request limit exceeded",
            retry_after=max(retry_after or 0.0, limit_retry_after),
            details=details,
        )
    # By status the SALESFORCE table decides; Salesforce's codes, which a status cannot say, come first.
    cls = SALESFORCE.error_class(status)
    if codes & THROTTLED_CODES:
        cls = ThrottledError
    elif cls is PermanentError and codes & TRANSIENT_CODES:
        cls = TransientError
    elif cls is PermanentError and (codes & SESSION_CODES or status == 401):
        return TransientError(f"{what}: session rejected", details=details)  # the client logs in again
    if cls is ThrottledError and retry_after is None:
        retry_after = THROTTLED_WAIT_S
    text = {ThrottledError: "throttled", TransientError: "temporary failure"}.get(
        cls, "rejected by Salesforce"
    )
    return cls(f"{what}: {text}", retry_after=None if cls is PermanentError else retry_after, details=details)
