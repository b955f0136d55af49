"""The one Retry-After parser of the connectors: delta-seconds, HTTP-date, Lago's epoch reset, garbage."""

from __future__ import annotations

import httpx
import pytest

from lead2cash.connectors.http import parse_retry_after, retry_after_of

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def now() -> float:
    return NOW


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("-3", 0.0),  # never negative
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),  # IMF-fixdate
        ("Thursday, 01-Jan-26 00:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),  # a date already past: at once
        (str(int(NOW + 45)), 45.0),  # an epoch timestamp (Lago's X-RateLimit-Reset on some deployments)
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=now) == (pytest.approx(seconds) if seconds is not None else None)


def test_the_first_readable_header_wins_case_insensitively() -> None:
    headers = httpx.Headers({"retry-after": "later", "X-RateLimit-Reset": "7"})
    assert retry_after_of(headers, ("Retry-After", "X-RateLimit-Reset"), now=now) == 7.0
    assert retry_after_of(httpx.Headers({"RETRY-AFTER": "3"}), now=now) == 3.0
    assert retry_after_of(httpx.Headers({}), now=now) is None


def test_connectors_read_an_http_date_retry_after() -> None:
    """Each connector's classification goes through the shared parser: an HTTP-date is a wait, not None."""
    from email.utils import formatdate

    from lead2cash.connectors import lago
    from lead2cash.connectors.sap import odata

    date = formatdate(usegmt=True, timeval=__import__("time").time() + 30)
    response = httpx.Response(429, headers={"Retry-After": date}, request=httpx.Request("GET", "https://x"))
    for module in (lago, odata):
        wait = module._retry_after(response)
        assert wait is not None and 25 <= wait <= 31, module.__name__


@pytest.mark.parametrize(
    ("status", "klass"),
    [
        (429, "ThrottledError"),
        (408, "TransientError"),
        (425, "TransientError"),
        (500, "TransientError"),
        (503, "TransientError"),
        (400, "PermanentError"),
        (404, "PermanentError"),
        (None, "PermanentError"),
    ],
)
def test_the_sap_status_tables(status: int | None, klass: str) -> None:
    from lead2cash.connectors.http import SAP_ODATA, SAP_SOAP

    for table in (SAP_ODATA, SAP_SOAP):
        error = table.error(status, "x", retry_after=3.0)
        assert type(error).__name__ == klass
        # A permanent refusal is not retried, so it carries no wait.
        assert error.retry_after == (None if klass == "PermanentError" else 3.0)
