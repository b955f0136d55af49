"""Store outages for tests, real ones: a TCP proxy in front of PostgreSQL that drops every connection and
refuses new ones (the server restarting, as the hub sees it; the real server is never touched), and SQLite
answering SQLITE_FULL ("database or disk is full") through ``PRAGMA max_page_count``. Plus a JSON Lines
system whose target is slow and shared by several processes (effects counted per key in one file).
Test code only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.engine import Engine

from lead2cash.connectors.file import JsonLinesFile
from lead2cash.errors import PermanentError
from lead2cash.routes.interfaces import Source, Target
from lead2cash.systems.file.binding import FileSource

SQLITE_MAX_PAGES = 1073741823  # SQLite's default max_page_count


class TcpProxy:
    """127.0.0.1:<port> -> ``upstream``, in its own thread. ``cut()`` aborts every connection and closes
    the listening socket (connects are refused); ``restore()`` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self.port = 0
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-proxy")
        self._thread.start()
        self._call(self._listen())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, up_writer.transport}
        self._transports |= pair

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._transports -= pair

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def cut(self) -> None:
        self.cuts += 1
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def url(self, pg_url: str) -> str:
        host, port = self.upstream
        return pg_url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class SqliteDiskFull:
    """While ``flag`` exists, every connection to the SQLite file ``database`` that is checked out gets
    ``max_page_count`` at its current size: SQLite then refuses whatever needs a new page with SQLITE_FULL,
    as on a full disk. Removing the flag lifts it at the next checkout. Listens on every Engine of the
    process, so it also works inside a hub process (see ``disk_full_system``)."""

    def __init__(self, database: str | Path, flag: str | Path) -> None:
        self.database = str(Path(database).resolve())
        self.flag = Path(flag)
        event.listen(Engine, "checkout", self._on_checkout)

    def _on_checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if not type(dbapi_connection).__module__.startswith("sqlite3"):
            return
        full = self.flag.exists()
        if record.info.get("lead2cash_full", False) == full:
            return
        if dbapi_connection.execute("PRAGMA database_list").fetchone()[2] != self.database:
            return
        dbapi_connection.execute(f"PRAGMA max_page_count = {1 if full else SQLITE_MAX_PAGES}")
        record.info["lead2cash_full"] = full

    def fill(self) -> None:
        self.flag.touch()

    def free(self) -> None:
        self.flag.unlink(missing_ok=True)

    def remove(self) -> None:
        event.remove(Engine, "checkout", self._on_checkout)


class _NoRoutes:
    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        raise ValueError("this system only fills the disk")

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        raise ValueError("this system only fills the disk")


def disk_full_system(name: str, options: Mapping[str, Any]) -> Any:
    """A ``type: python`` system a hub's config can name to bring ``SqliteDiskFull`` into its process:
    ``options: {database: <state.db>, flag: <file>}``."""
    SqliteDiskFull(options["database"], options["flag"])
    return _NoRoutes()


# ---------------------------------------------------------------------------------------------- shared target
class SharedFileTarget:
    """Appends ``{"key", "pid"}`` to a JSON Lines file after ``delay_s`` (a target that takes its time, like
    SAP posting an entry); every process delivering to it sees the others' effects. Keys listed in
    ``reject`` (one per line) are refused as permanent errors."""

    def __init__(self, name: str, path: Path, reject: Path, delay_s: float) -> None:
        self.name = name
        self.path = path
        self.reject = reject
        self.delay_s = delay_s

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        await asyncio.sleep(self.delay_s)
        if self.reject.exists() and key in self.reject.read_text().split():
            raise PermanentError("rejected by target", details={"key": key})
        line = (json.dumps({"key": key, "pid": os.getpid()}) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return f"ref-{key}"

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return f"ref-{key}" if effects(self.path)[key] else None


def effects(path: Path) -> Counter[str]:
    """Effects per key in a ``SharedFileTarget``'s file."""
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip())


class SharedFileSystem:
    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.directory = Path(options["directory"])
        self.delay_s = float(options.get("delay_s", 0.3))

    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        return FileSource(f"{self.name}/{object}", JsonLinesFile(self.directory / f"{object}.jsonl"))

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        return SharedFileTarget(
            f"{self.name}/{action}",
            self.directory / f"{action}.effects.jsonl",
            self.directory / f"{action}.reject",
            self.delay_s,
        )


def shared_file_system(name: str, options: Mapping[str, Any]) -> Any:
    return SharedFileSystem(name, options)
