"""One Retry-After parser for every connector (RFC 9110 §10.2.3): ``delta-seconds`` or an ``HTTP-date``.

Lago also answers ``X-RateLimit-Reset``, which some deployments send as an epoch timestamp rather than
seconds: a number too large to be a delay is read as that moment.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime

# A delay this large (about 31 years) can only be an epoch timestamp.
EPOCH_THRESHOLD = 1e9


def parse_retry_after(value: object, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After value, never negative; None when absent or unreadable.
    ``now`` (epoch seconds) is injectable so an HTTP-date is read against a known clock."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # HTTP-dates are GMT; an obsolete form may parse without a zone
            moment = moment.replace(tzinfo=dt.UTC)
        return max(0.0, moment.timestamp() - now())
    if not math.isfinite(seconds):
        return None
    if seconds > EPOCH_THRESHOLD:
        return max(0.0, seconds - now())
    return max(0.0, seconds)


def retry_after_of(
    headers: Mapping[str, str],
    names: Iterable[str] = ("Retry-After",),
    *,
    now: Callable[[], float] = time.time,
) -> float | None:
    """The first readable of ``names`` in ``headers`` (an httpx or requests header map: case-insensitive)."""
    for name in names:
        seconds = parse_retry_after(headers.get(name), now=now)
        if seconds is not None:
            return seconds
    return None
