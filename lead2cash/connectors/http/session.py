"""One httpx client per connector for as long as the hub runs (``ClientSlot``), closed by the hub at
shutdown through the connector's ``aclose``.

httpx's pool (and the aiohttp session under it) belongs to the event loop it was first used in. The hub runs
under one loop for its whole life, but the CLI and tests run it under several consecutive ones: a client
left behind by a finished loop can be neither used nor closed from the next, so the slot replaces it there
(and drops it: its sockets went with its loop). Under one loop the client is made once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx


class ClientSlot:
    """Holds the one ``httpx.AsyncClient`` of a connector; ``factory`` makes it on first use."""

    def __init__(self, factory: Callable[[], httpx.AsyncClient]) -> None:
        self._factory = factory
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.made = 0  # clients made: one for the hub's life, more only when the loop changed

    @property
    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None or client.is_closed or self._loop is not loop:
            client = self._client = self._factory()
            self._loop = loop
            self.made += 1
        return client

    async def aclose(self) -> None:
        """Close the client if it was made under the running loop (another loop's went with it)."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is asyncio.get_running_loop():
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
