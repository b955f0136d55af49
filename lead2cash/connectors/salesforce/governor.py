"""The API budget governor: keeps each route within its share of the org's daily API allocation.

Salesforce reports ``Sforce-Limit-Info: api-usage=used/max`` on every REST response; ``/limits`` gives the
same figures on start. When the org's remaining budget falls below ``pause_below`` (a fraction of the
allocation), or a route has used its ``daily_share``, calls are refused with ``ThrottledError`` before they
are made: the router then pauses the route and keeps its checkpoint and its messages. After ``retry_after``
one call is let through, and its response tells whether budget has returned.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from lead2cash.errors import ThrottledError

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
DAY = 86_400.0


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    match = _USAGE.search(header or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


class ApiGovernor:
    def __init__(
        self,
        *,
        pause_below: float = 0.1,
        retry_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # seconds, monotonic; injectable so tests move time instead of sleeping
        self.pause_below = pause_below
        self.retry_after = retry_after
        self.used: int | None = None
        self.max: int | None = None
        self.calls = 0  # responses seen by this process (each one an API call against the allocation)
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        return None if self.max is None or self.used is None else max(self.max - self.used, 0)

    def observe(self, used: int, maximum: int) -> None:
        with self._lock:
            self.used, self.max = used, maximum
            low = maximum <= 0 or (maximum - used) / maximum < self.pause_below
            if low and self._blocked_until <= self.clock():
                self._blocked_until = self.clock() + self.retry_after
            elif not low:
                self._blocked_until = 0.0

    def exhausted(self, retry_after: float | None = None) -> None:
        """REQUEST_LIMIT_EXCEEDED was answered: stop calling for a while."""
        with self._lock:
            self._blocked_until = self.clock() + max(retry_after or 0.0, self.retry_after)

    def check(self) -> None:
        wait = self._blocked_until - self.clock()
        if wait > 0:
            raise ThrottledError(
                "Salesforce API budget low; route paused until it returns",
                retry_after=wait,
                details={"api_used": self.used, "api_max": self.max, "pause_below": self.pause_below},
            )

    def budget(self, name: str, share: float) -> RouteBudget:
        return RouteBudget(name, share, self)


@dataclass
class RouteBudget:
    """One route's share of the daily allocation, counted over a rolling 24 hours (as Salesforce counts)."""

    name: str
    share: float
    governor: ApiGovernor

    def __post_init__(self) -> None:
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        self._expire()
        return len(self._calls)

    def _expire(self) -> None:
        horizon = self.governor.clock() - DAY
        with self._lock:
            while self._calls and self._calls[0] < horizon:
                self._calls.popleft()

    def count(self) -> None:
        with self._lock:
            self._calls.append(self.governor.clock())

    def check(self) -> None:
        self.governor.check()
        maximum = self.governor.max
        if maximum is None or self.share >= 1.0:
            return
        self._expire()
        quota = int(maximum * self.share)
        if len(self._calls) >= quota:
            with self._lock:
                oldest = self._calls[0] if self._calls else self.governor.clock()
            wait = max(oldest + DAY - self.governor.clock(), 1.0)
            raise ThrottledError(
                f"route {self.name} used its share of the Salesforce API allocation",
                retry_after=min(wait, self.governor.retry_after),
                details={"route_calls_24h": len(self._calls), "route_quota": quota},
            )
