"""Wait on a condition, never for a fixed time: a fixed sleep is too short on a loaded machine (the test
fails for nothing) and too long on an idle one (the suite crawls). Import as ``from waiting import ...``
(``tests/`` is on the path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, step: float = 0.05, what: str = "") -> T:
    """The predicate's first truthy value, polled every ``step`` s; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or 'condition'} not reached within {timeout}s (last: {value!r})")
        time.sleep(step)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 30.0, step: float = 0.05, what: str = ""
) -> T:
    """``wait_until`` for a running event loop: the predicate may be a coroutine function; a blocking one
    should be wrapped in ``asyncio.to_thread`` by the caller."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or 'condition'} not reached within {timeout}s (last: {value!r})")
        await asyncio.sleep(step)
