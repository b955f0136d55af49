"""Usage records -> canonical ``UsageEvent``: an API gateway's call record and a telephone switch's call
detail record (CDR). Pure translation, no I/O.

Each event's id is its **transaction id**, derived from the record's own identity only: the gateway's
request id, or the switch, call id and answer time of a CDR (a switch reuses call ids). The same record,
however often it is read or redelivered, is the same event, and Lago counts it once.

Options (``mapping.options``): ``metric`` (the billable metric code; default ``api_calls`` / ``call_seconds``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from lead2cash.canonical_model import UsageEvent


def _required(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or value.get(part) in (None, ""):
            raise ValueError(f"{path}: missing")
        value = value[part]
    return value


def _timestamp(value: Any, field: str) -> datetime:
    """ISO 8601 with a zone, or epoch seconds (integer or decimal string)."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: not a timestamp: {value!r}")
    if isinstance(value, int | Decimal) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        # Exact to the microsecond: a float of a long epoch value would round it.
        micros = (Decimal(str(value)) * 1_000_000).to_integral_value(ROUND_HALF_EVEN)
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field}: not a timestamp: {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{field}: no timezone in {value!r}")
        return parsed
    raise ValueError(f"{field}: not a timestamp: {value!r}")


def _number(value: Any, field: str) -> str:
    """A count or measure as a canonical decimal string (never a float in between)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{field}: not a number: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{field}: not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{field}: must be a finite number >= 0, got {value!r}")
    return format(number.normalize(), "f")


def api_call(record: Mapping[str, Any], options: Mapping[str, Any]) -> UsageEvent:
    """``{request_id, account_id, subscription_id, ts, endpoint?, method?, status?, bytes_out?}``."""
    request_id = str(_required(record, "request_id"))
    properties: dict[str, Any] = {}
    for key in ("endpoint", "method", "region"):
        if record.get(key) not in (None, ""):
            properties[key] = record[key]
    if record.get("status") is not None:
        properties["status"] = str(record["status"])
    if record.get("bytes_out") is not None:
        properties["bytes"] = _number(record["bytes_out"], "bytes_out")
    return UsageEvent(
        id=f"api:{request_id}",
        customer_id=str(_required(record, "account_id")),
        subscription_id=str(_required(record, "subscription_id")),
        metric_code=str(options.get("metric") or "api_calls"),
        timestamp=_timestamp(_required(record, "ts"), "ts"),
        properties=properties,
    )


def call_detail_record(record: Mapping[str, Any], options: Mapping[str, Any]) -> UsageEvent:
    """``{switch, call_id, answered_at, duration_s, subscriber: {customer, subscription}, callee?}``;
    billed seconds are the ``seconds`` property (a ``sum_agg`` metric)."""
    switch = str(_required(record, "switch"))
    call_id = str(_required(record, "call_id"))
    answered = _timestamp(_required(record, "answered_at"), "answered_at")
    natural = f"{switch}|{call_id}|{answered.astimezone(UTC).isoformat()}"
    properties: dict[str, Any] = {"seconds": _number(_required(record, "duration_s"), "duration_s")}
    callee = record.get("callee")
    if isinstance(callee, str) and callee.startswith("+") and len(callee) > 3:
        properties["destination"] = callee[:3]  # the country prefix, not the number (privacy)
    elif callee is not None:
        properties["destination"] = callee  # whatever it is; the billing engine judges it
    return UsageEvent(
        id="cdr:" + hashlib.sha256(natural.encode()).hexdigest()[:32],
        customer_id=str(_required(record, "subscriber.customer")),
        subscription_id=str(_required(record, "subscriber.subscription")),
        metric_code=str(options.get("metric") or "call_seconds"),
        timestamp=answered,
        properties=properties,
    )


INBOUND = {"usage.api_call": api_call, "usage.cdr": call_detail_record}
