"""A route's ceiling on the calls it makes to its target, shared by the route and the connectors below it.

The route takes a slot before each delivery and each lookup. A connector that repeats a call within a
delivery (a quick retry of a failed read) takes one more from the pacer of the route it is working for,
found in ``current_pacer``: the route sets it in the task of each delivery, and the tasks a target starts
from there inherit it.

The same way, ``current_fence`` holds the route's ownership check for the message being delivered: a
connector whose write has no idempotency key of its own (an SAP journal entry) calls ``fence()`` right
before sending it, after the reads that prepare it, so a worker that stalled during those reads and lost
the message meanwhile does not write it a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar


class RateLimiter:
    """Spaces calls at least ``1 / rate`` seconds apart (no bursts): a route's ceiling on its target."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


current_pacer: ContextVar[RateLimiter | None] = ContextVar("lead2cash_pacer", default=None)


class LeaseLost(Exception):
    """Another worker claimed the message since this one did (this one stalled past its lease): the
    delivery stops before writing and records nothing."""


current_fence: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("lead2cash_fence", default=None)


# Whether the delivery under way follows an attempt that may have reached the target (the ledger shows
# the key sent and unconfirmed, or an earlier try of this delivery failed after sending): a target that
# skips its reads when the ledger vouches for a first delivery reads here.
delivery_in_doubt: ContextVar[bool] = ContextVar("lead2cash_delivery_in_doubt", default=True)


async def fence() -> None:
    """Raise ``LeaseLost`` unless this worker still holds the message being delivered (no-op outside a
    delivery)."""
    check = current_fence.get()
    if check is not None:
        await check()


async def pace() -> None:
    """Wait for a slot of the route this call is made for, if that route has a ceiling."""
    pacer = current_pacer.get()
    if pacer is not None:
        await pacer.acquire()
