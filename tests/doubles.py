"""Test doubles for the router: an in-memory source and a target that counts effects per key and can be
told to fail transiently, fail permanently, or lose its response after committing. Test code only."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel

from lead2cash.routes.errors import PermanentError, ThrottledError, TransientError
from lead2cash.routes.interfaces import SourceBatch


@dataclass
class Behaviour:
    transient_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: float | None = None
    lose_response_rate: float = 0.0
    permanent_keys: set[str] = field(default_factory=set)
    fail_first: int = 0  # the first N calls fail transiently
    slow_keys: dict[str, float] = field(default_factory=dict)  # key -> seconds the call takes
    seed: int = 1


class CountingTarget:
    def __init__(self, name: str, behaviour: Behaviour | None = None) -> None:
        self.name = name
        self.behaviour = behaviour or Behaviour()
        self.effects: Counter[str] = Counter()
        self.calls = 0
        self.lookups = 0
        self.contexts: dict[str, dict[str, object]] = {}  # key -> the log context the call ran in
        self._rng = random.Random(self.behaviour.seed)
        self._lock = threading.Lock()

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        b = self.behaviour
        self.contexts[key] = structlog.contextvars.get_contextvars()
        with self._lock:
            self.calls += 1
            calls = self.calls
            roll = self._rng.random()
            roll2 = self._rng.random()
        if key in b.slow_keys:
            await asyncio.sleep(b.slow_keys[key])
        if key in b.permanent_keys:
            raise PermanentError("rejected by target", details={"field": "customer.name"})
        if calls <= b.fail_first or roll < b.transient_rate:
            raise TransientError("503 Service Unavailable")
        if roll < b.transient_rate + b.throttle_rate:
            raise ThrottledError("429 Too Many Requests", retry_after=b.retry_after)
        with self._lock:
            self.effects[key] += 1
        if roll2 < b.lose_response_rate:
            raise TransientError("connection reset after commit")
        return f"ref-{key}"

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        with self._lock:
            self.lookups += 1
            return f"ref-{key}" if self.effects[key] else None


class MemorySource:
    def __init__(self, name: str, records: list[Mapping[str, Any]]) -> None:
        self.name = name
        self.records = records

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        start = int(checkpoint or 0)
        chunk = self.records[start : start + limit]
        end = start + len(chunk)
        return SourceBatch(chunk, str(end), more=end < len(self.records))


class MemorySystem:
    """``type: python`` system: ``factory: doubles:memory_system``; state lives in ``REGISTRY[name]``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: list[Mapping[str, Any]] = []
        self.targets: dict[str, CountingTarget] = {}
        self.behaviour = Behaviour()

    def source(self, object: str, options: Mapping[str, Any]) -> MemorySource:
        return MemorySource(f"{self.name}/{object}", self.records)

    def target(self, action: str, options: Mapping[str, Any]) -> CountingTarget:
        if action not in self.targets:
            self.targets[action] = CountingTarget(f"{self.name}/{action}", self.behaviour)
        return self.targets[action]


REGISTRY: dict[str, MemorySystem] = {}


def memory_system(name: str, options: Mapping[str, Any]) -> MemorySystem:
    """Reused across hubs built in one process, so a second hub (a CLI replay) sees the same target."""
    if name not in REGISTRY:
        REGISTRY[name] = MemorySystem(name)
    return REGISTRY[name]


class SlowFileTarget:
    """A target that survives the hub being killed: effects are lines in a file (fsync'd), and a call
    takes ``delay`` seconds so that kills land mid-run."""

    def __init__(self, name: str, path: Path, delay: float) -> None:
        self.name = name
        self.path = path
        self.delay = delay

    def _keys(self) -> set[str]:
        if not self.path.exists():
            return set()
        return {json.loads(line)["key"] for line in self.path.read_text().splitlines() if line.endswith("}")}

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        time.sleep(self.delay)  # block the loop on purpose: a slow, synchronous target
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps({"key": key}) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return key

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        return key if key in self._keys() else None


class FileBackedSystem:
    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        from lead2cash.connectors.file import JsonLinesFile

        self.name = name
        self.directory = Path(options["directory"])
        self.delay = float(options.get("delay", 0.001))
        self.file = JsonLinesFile

    def source(self, object: str, options: Mapping[str, Any]) -> Any:
        from lead2cash.systems.file.binding import FileSource

        return FileSource(f"{self.name}/{object}", self.file(self.directory / f"{object}.jsonl"))

    def target(self, action: str, options: Mapping[str, Any]) -> SlowFileTarget:
        return SlowFileTarget(f"{self.name}/{action}", self.directory / "effects.jsonl", self.delay)


def file_backed_system(name: str, options: Mapping[str, Any]) -> FileBackedSystem:
    return FileBackedSystem(name, options)
