"""Retry and failure policies of a route."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OnFailure(StrEnum):
    DEAD_LETTER = "dead-letter"
    HALT_ROUTE = "halt-route"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    jitter_s: float = 0.5
    # A Retry-After longer than this is not slept through: the message is rescheduled and the route paused.
    max_inline_wait_s: float = 30.0
