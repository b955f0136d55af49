"""Helpers shared by the reliability scenarios 3-8 (webhook abuse, bad input, bad config, resource limits,
secrets, clock skew). Not a conftest: import what you need.

Sizes: every scenario runs at a CI size by default; ``LEAD2CASH_RELIABILITY_SIZE=large`` (what
``bench/chaos.py --size large`` sets) runs the same code bigger. Figures each test measured are appended as
JSON lines to ``$LEAD2CASH_RELIABILITY_REPORT`` when that is set, so the bench can print them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from lead2cash.store import Store

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
LARGE = os.environ.get("LEAD2CASH_RELIABILITY_SIZE", "ci").lower() == "large"


def size(ci: int, large: int) -> int:
    """The CI size of a scenario, or its large size under ``LEAD2CASH_RELIABILITY_SIZE=large``."""
    return large if LARGE else ci


def report(scenario: str, **figures: Any) -> None:
    """Record a scenario's figures (printed with ``pytest -s``; appended to the report file if set)."""
    line = json.dumps({"scenario": scenario, **figures}, default=str, sort_keys=True)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get("LEAD2CASH_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def hmac_b64(key: str, body: bytes) -> str:
    """Lago's (and the generic webhook trigger's) signature: base64(HMAC-SHA256(key, raw body))."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not reached within {timeout}s")


def table_count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def inbox_census(store: Store) -> dict[str, int]:
    """What a forged request could have added: inbox messages, receipts and dead letters."""
    return {
        "messages": table_count(store, "messages"),
        "receipts": table_count(store, "inbound_receipts"),
        "dead_letters": table_count(store, "dead_letters"),
    }


class PeakRss:
    """Samples a process's resident set size in a thread; ``growth_mb`` = peak minus the value at start."""

    def __init__(self, pid: int | None = None, interval: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.start_rss = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.start_rss = self.peak_rss = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak_rss - self.start_rss) / 2**20

    @property
    def peak_mb(self) -> float:
        return self.peak_rss / 2**20


def secret_hits(secrets: dict[str, str], texts: dict[str, str]) -> list[str]:
    """Every (secret name, where) pair for which the secret's value occurs in the text."""
    return [
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, text in texts.items()
        if value and value in text
    ]


@contextmanager
def captured_stdlib_logs(level: int) -> Iterator[list[str]]:
    """Every stdlib ``logging`` record (httpx, zeep, uvicorn, apscheduler ...) at ``level`` and above,
    formatted with its arguments, while the block runs."""
    import logging

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                text = self.format(record)
            except Exception as exc:  # a broken log call must not hide what it would have printed
                text = f"{record.msg!r} {record.args!r} ({exc})"
            lines.append(text)

    handler = Collect(level)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
