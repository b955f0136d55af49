"""The batch assembly batching targets share: deliveries in flight gathered into calls, each ending alone."""

from __future__ import annotations

import asyncio

import pytest

from lead2cash.errors import PermanentError, TransientError
from lead2cash.routes.batching import Coalescer


def test_items_in_flight_go_in_calls_of_at_most_max_size() -> None:
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[int | BaseException]:
        sent.append(items)
        return [i * 10 for i in items]

    async def scenario() -> list[int]:
        batcher: Coalescer[int, int] = Coalescer(send, max_size=4, linger=0.01)
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(10))))

    assert asyncio.run(scenario()) == [i * 10 for i in range(10)]
    assert sent == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_an_item_fails_alone_and_a_failed_call_fails_each_item_with_its_own_error() -> None:
    async def send(items: list[int]) -> list[int | BaseException]:
        if 99 in items:
            raise TransientError("timed out", details={"n": len(items)})
        return [PermanentError(f"bad {i}") if i == 2 else i for i in items]

    async def scenario() -> tuple[list[object], list[object]]:
        batcher: Coalescer[int, int] = Coalescer(send, max_size=10, linger=0.005)
        first = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)), return_exceptions=True)
        second = await asyncio.gather(*(batcher.submit(i) for i in (98, 99)), return_exceptions=True)
        return list(first), list(second)

    first, second = asyncio.run(scenario())
    assert first[0] == 1 and first[2] == 3
    assert isinstance(first[1], PermanentError) and first[1].message == "bad 2"
    assert all(isinstance(e, TransientError) and e.details == {"n": 2} for e in second)
    assert second[0] is not second[1]


def test_a_wrong_number_of_results_fails_the_batch() -> None:
    async def send(items: list[int]) -> list[int | BaseException]:
        return [1]

    async def scenario() -> None:
        batcher: Coalescer[int, int] = Coalescer(send, max_size=10, linger=0.001)
        await asyncio.gather(batcher.submit(1), batcher.submit(2))

    with pytest.raises(RuntimeError, match="batch of 2 answered with 1 results"):
        asyncio.run(scenario())
