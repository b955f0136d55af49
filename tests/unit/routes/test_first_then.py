"""The first try outside tenacity: the policy sees the same attempts, and a success builds no retry loop."""

from __future__ import annotations

import asyncio

import pytest
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_none

from lead2cash.connectors.quick_retry import quick_retry
from lead2cash.errors import PermanentError, TransientError
from lead2cash.retrying import first_then


def test_a_first_try_that_succeeds_builds_no_retry_loop() -> None:
    def retrying() -> AsyncRetrying:
        raise AssertionError("a retry loop was built for a call that succeeded at once")

    async def call() -> str:
        return "ok"

    assert asyncio.run(first_then(call, retrying)) == "ok"


def test_the_failed_first_try_is_the_policys_attempt_one() -> None:
    tries: list[int] = []
    slept_after: list[int] = []

    async def call() -> str:
        tries.append(len(tries) + 1)
        if len(tries) < 3:
            raise ValueError(f"try {len(tries)}")
        return "third"

    def before_sleep(state: RetryCallState) -> None:
        slept_after.append(state.attempt_number)

    def retrying() -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(3), wait=wait_none(), before_sleep=before_sleep, reraise=True
        )

    assert asyncio.run(first_then(call, retrying)) == "third"
    assert tries == [1, 2, 3]  # the first try is not made twice
    assert slept_after == [1, 2]


def test_the_last_error_is_raised_when_the_attempts_run_out() -> None:
    tries = 0

    async def call() -> str:
        nonlocal tries
        tries += 1
        raise TransientError(f"try {tries}")

    with pytest.raises(TransientError, match="try 3"):
        asyncio.run(quick_retry(call, safe=True, retries=2, max_inline_wait=1.0))
    assert tries == 3


def test_an_error_not_to_repeat_is_raised_after_one_try() -> None:
    tries = 0

    async def call() -> str:
        nonlocal tries
        tries += 1
        raise PermanentError("refused")

    with pytest.raises(PermanentError):
        asyncio.run(quick_retry(call, safe=True, retries=2, max_inline_wait=1.0))
    assert tries == 1
