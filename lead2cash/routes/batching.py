"""Batch assembly for targets whose system takes many records in one call.

The router delivers one message per task, many at once (a route's ``concurrency``, and every route that
shares a target system). A batching target keeps the router's :class:`~lead2cash.routes.interfaces.Target`
interface (``deliver`` one entity, ``lookup`` one key) and gathers the deliveries in flight into one call:
each ``deliver`` submits its item to a :class:`Coalescer` and awaits its own result, so every message still
ends on its own (confirmed, retried or dead-lettered by the router with its own reason), and the ledger's
per-message steps (reserve, sent, confirm, the lookup before a resend) stay exactly as they are.

A batch goes when it is full or ``linger`` after its first item. ``send`` answers one result per item, in
order: a value, or an exception for that item alone (a failed item never fails its neighbours). An
exception raised by ``send`` itself is the whole call's fate: every item of the batch gets its own copy.
The Lago ``send_usage`` target (``POST /events/batch``) and SAP's bulk journal entry message
(``JournalEntryCreateRequestConfirmation_In``) work this way.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


def _own(exc: BaseException) -> BaseException:
    """Each waiting delivery raises an exception object of its own (tracebacks are per raise)."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


class Coalescer(Generic[T, R]):
    """Gathers concurrent submissions into calls of at most ``max_size`` items."""

    def __init__(self, send: Send[T, R], *, max_size: int, linger: float) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.send = send
        self.max_size = max_size
        self.linger = linger
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a hub run after another): nothing carries over
            self._loop, self._pending, self._timer = loop, [], None
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.linger, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch = [p for p in self._pending[: self.max_size] if not p[1].done()]  # not cancelled
            del self._pending[: self.max_size]
            if batch:
                task = asyncio.get_running_loop().create_task(self._send(batch))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.calls += 1
        self.items += len(batch)
        try:
            results = await self.send([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except BaseException as exc:  # the whole call's fate: each waiting delivery fails with it
            for _, future in batch:
                if not future.done():
                    future.set_exception(_own(exc))
            return
        if len(results) != len(batch):
            error = RuntimeError(f"batch of {len(batch)} answered with {len(results)} results")
            for _, future in batch:
                if not future.done():
                    future.set_exception(_own(error))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
