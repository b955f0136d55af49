"""One status -> error-class table per system: each system's table read back row by row."""

from __future__ import annotations

import pytest

from lead2cash.connectors.http import LAGO, SALESFORCE, SAP_ODATA, SAP_SOAP, NotFound, StatusTable
from lead2cash.connectors.lago import LagoNotFound
from lead2cash.errors import DeliveryError, PermanentError, ThrottledError, TransientError

P, T, R = PermanentError, TransientError, ThrottledError


def rows(table: StatusTable, expected: dict[int | None, type[DeliveryError]]) -> None:
    got = {status: table.error_class(status) for status in expected}
    assert got == expected, table.system


def test_lago_table() -> None:
    rows(LAGO, {None: P, 400: P, 401: R, 403: P, 404: NotFound, 409: P, 422: P, 429: R, 500: T, 503: T})
    assert LagoNotFound is NotFound
    # A revoked key pauses the route for a minute; a 429 waits what Lago says, a permanent error nothing.
    assert LAGO.error(401, "x").retry_after == 60.0
    assert LAGO.error(429, "x", retry_after=3.0).retry_after == 3.0
    assert LAGO.error(422, "x", retry_after=3.0).retry_after is None


@pytest.mark.parametrize("table", [SAP_ODATA, SAP_SOAP], ids=lambda t: t.system)
def test_sap_tables(table: StatusTable) -> None:
    rows(table, {None: P, 400: P, 401: P, 404: P, 408: T, 425: T, 429: R, 500: T, 502: T, 503: T})
    assert table.error(503, "x", retry_after=2.0).retry_after == 2.0


def test_salesforce_table() -> None:
    rows(SALESFORCE, {None: P, 400: P, 404: P, 429: R, 500: T, 502: T, 503: R})


def test_salesforce_codes_come_before_the_table() -> None:
    from lead2cash.connectors.salesforce.errors import classify

    def of(status: int | None, code: str) -> DeliveryError:
        return classify(status, [{"errorCode": code, "message": "m"}])

    assert type(of(400, "UNABLE_TO_LOCK_ROW")) is T  # a 4xx, but a lock: transient
    assert type(of(401, "INVALID_SESSION_ID")) is T
    assert type(of(400, "SERVER_UNAVAILABLE")) is R and of(400, "SERVER_UNAVAILABLE").retry_after == 5.0
    assert type(of(503, "INVALID_SESSION_ID")) is R  # the status's throttling wins over the session
    assert type(of(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION")) is P
    assert type(of(None, "DUPLICATE_VALUE")) is P  # a record's failure carries no status
