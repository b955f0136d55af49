"""A route's ceiling on the calls it makes to its target, shared by the route and the connectors below it.

The route takes a slot before each delivery and each lookup. A connector that repeats a call within a
delivery (a quick retry of a failed read) takes one more from the pacer of the route it is working for,
found in ``current_pacer``: the route sets it in the task of each delivery, and the tasks a target starts
from there inherit it.
"""

from __future__ import annotations

import asyncio
import time
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


async def pace() -> None:
    """Wait for a slot of the route this call is made for, if that route has a ceiling."""
    pacer = current_pacer.get()
    if pacer is not None:
        await pacer.acquire()
