"""One httpx client per connector for as long as the hub runs (``ClientSlot``), closed by the hub at
shutdown through the connector's ``aclose``.

httpx's pool (and the aiohttp session under it) belongs to the event loop it was first used in. The hub runs
under one loop for its whole life, but the CLI and tests run it under several consecutive ones: a client
left behind by a finished loop can be neither used nor closed from the next, so the slot replaces it there.
So that such a client is not left open either, the loop that made it closes it as it shuts down (an async
generator's ``finally``, which ``asyncio.run`` runs in ``shutdown_asyncgens``). Under one loop the client
is made once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx


class ClientSlot:
    """Holds the one ``httpx.AsyncClient`` of a connector; ``factory`` makes it on first use."""

    def __init__(self, factory: Callable[[], httpx.AsyncClient]) -> None:
        self._factory = factory
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard: AsyncIterator[None] | None = None
        self.made = 0  # clients made: one for the hub's life, more only when the loop changed

    @property
    def current(self) -> httpx.AsyncClient | None:
        """The client made last, if any (no new one is made)."""
        return self._client

    async def get(self) -> httpx.AsyncClient:
        client = self._client
        if client is not None and not client.is_closed and self._loop is asyncio.get_running_loop():
            return client
        client = self._client = self._factory()
        self._loop = asyncio.get_running_loop()
        self.made += 1
        guard = self._guard = _closed_with_loop(client)
        await guard.__anext__()
        return client

    async def aclose(self) -> None:
        """Close the client if it was made under the running loop (another loop's is closed by that loop)."""
        client, loop = self._client, self._loop
        self._client = self._loop = self._guard = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()


async def _closed_with_loop(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if not client.is_closed:
            await client.aclose()


class LoopLock:
    """An ``asyncio.Lock`` for the running loop: a lock that waited once is bound to its loop, and the
    objects holding one (a token cache) outlive loops in the CLI and tests."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock
