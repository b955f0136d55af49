"""Usage records map to canonical usage events with a transaction id that depends on the record only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from lead2cash.canonical_model import UsageEvent
from lead2cash.systems.registry import inbound_adapters

CDR = {"switch": "fra-1", "call_id": "77", "answered_at": "2026-01-05T10:00:00+01:00", "duration_s": 125,
       "subscriber": {"customer": "CUST-1", "subscription": "SUB-1"}, "callee": "+4930123456"}  # fmt: skip
API = {"request_id": "req-9", "account_id": "CUST-1", "subscription_id": "SUB-1", "ts": "1767607200.250",
       "endpoint": "/v1/orders", "method": "POST", "status": 201, "bytes_out": "5120"}  # fmt: skip


def cdr(**over: Any) -> UsageEvent:
    return inbound_adapters()["usage.cdr"]({**CDR, **over}, {})  # type: ignore[return-value]


def test_cdr_maps_seconds_and_a_stable_transaction_id() -> None:
    event = cdr()
    assert event.metric_code == "call_seconds" and event.properties == {
        "seconds": "125",
        "destination": "+49",
    }
    assert event.timestamp == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert event.id == cdr().id  # read twice: the same event
    # The same instant in another zone is the same call; another answer time is another call.
    assert cdr(answered_at="2026-01-05T09:00:00Z").id == event.id
    assert cdr(answered_at="2026-01-05T09:00:01Z").id != event.id
    assert cdr(switch="fra-2").id != event.id


def test_api_call_record() -> None:
    event = inbound_adapters()["usage.api_call"](API, {"metric": "requests"})
    assert isinstance(event, UsageEvent)
    assert (event.id, event.metric_code, event.customer_id, event.subscription_id) == (
        "api:req-9", "requests", "CUST-1", "SUB-1")  # fmt: skip
    assert event.properties == {"endpoint": "/v1/orders", "method": "POST", "status": "201", "bytes": "5120"}
    assert event.timestamp == datetime(2026, 1, 5, 10, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({**CDR, "duration_s": "ten"}, "duration_s: not a number"),
        ({**CDR, "duration_s": -1}, "duration_s: must be"),
        ({**CDR, "answered_at": "2026-01-05T10:00:00"}, "answered_at: no timezone"),
        ({k: v for k, v in CDR.items() if k != "subscriber"}, "subscriber.customer: missing"),
    ],
)
def test_bad_records_say_which_field(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inbound_adapters()["usage.cdr"](record, {})


def test_usage_event_refuses_floats_and_naive_times() -> None:
    base = {"id": "x", "customer_id": "c", "subscription_id": "s", "metric_code": "m"}
    with pytest.raises(ValidationError, match="decimal strings"):
        UsageEvent(**base, timestamp=datetime.now(UTC), properties={"gb": 1.5})
    with pytest.raises(ValidationError, match="timezone"):
        UsageEvent(**base, timestamp=datetime(2026, 1, 1))
    aware = UsageEvent(**base, timestamp=datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    assert aware.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
