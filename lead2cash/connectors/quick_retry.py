"""Quick in-call retries of requests that are safe to repeat, shared by the HTTP connectors.

A read that fails once in five (a gateway 503, a reset connection) should not cost a route a whole
attempt: a delivery makes several calls, and the route's backoff is seconds where this one is tens of
milliseconds. What is not safe to repeat is handed up at once, because the route must look the effect up
before sending again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from lead2cash.errors import DeliveryError, PermanentError, ThrottledError
from lead2cash.pacing import pace
from lead2cash.retrying import first_then

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
    ``rate_limit`` like any other call. On tenacity, as the router's retries are."""
    backoff = wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05)

    def retryable(exc: BaseException) -> bool:
        if not isinstance(exc, DeliveryError) or not repeatable(exc, safe):
            return False
        return exc.retry_after is None or exc.retry_after <= max_inline_wait

    def wait(state: RetryCallState) -> float:
        delay = float(backoff(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, DeliveryError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)
        await pace()  # the repeat is a call of the route like any other

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else 0.0
        described = exc.describe() if isinstance(exc, DeliveryError) else repr(exc)
        log.debug("repeating a call", attempt=state.attempt_number, wait_s=round(wait_s, 3), error=described)

    def retrying() -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=wait,
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )

    return await first_then(call, retrying)
