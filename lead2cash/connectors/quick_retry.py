"""Quick in-call retries of requests that are safe to repeat, shared by the HTTP connectors.

A read that fails once in five (a gateway 503, a reset connection) should not cost a route a whole
attempt: a delivery makes several calls, and the route's backoff is seconds where this one is tens of
milliseconds. What is not safe to repeat is handed up at once, because the route must look the effect up
before sending again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from lead2cash.errors import DeliveryError, PermanentError, ThrottledError
from lead2cash.pacing import pace

T = TypeVar("T")

log = structlog.get_logger("lead2cash.connectors")


def repeatable(exc: DeliveryError, safe: bool) -> bool:
    """Whether ``exc`` may be retried here: a safe request on any non-permanent error; an unsafe one only
    on a 429, which the server answers before doing any work."""
    if isinstance(exc, PermanentError):
        return False
    return safe or (isinstance(exc, ThrottledError) and exc.details.get("status") == 429)


async def quick_retry(
    call: Callable[[], Awaitable[T]], *, safe: bool, retries: int, max_inline_wait: float
) -> T:
    """``call()`` with up to ``retries`` repeats, 50 ms doubling to 2 s plus jitter, or the server's
    Retry-After when it is longer; a Retry-After beyond ``max_inline_wait`` goes up to the route, which
    pauses instead of holding a connection slot. Each repeat counts against the calling route's
    ``rate_limit`` like any other call."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except DeliveryError as exc:
            if attempt > retries or not repeatable(exc, safe):
                raise
            wait = min(2.0, 0.05 * 2 ** (attempt - 1)) + random.uniform(0, 0.05)
            if exc.retry_after is not None:
                if exc.retry_after > max_inline_wait:
                    raise
                wait = max(wait, exc.retry_after)
            log.debug("repeating a call", attempt=attempt, wait_s=round(wait, 3), error=exc.describe())
            await asyncio.sleep(wait)
            await pace()
