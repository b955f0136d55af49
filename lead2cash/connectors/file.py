"""JSON Lines files: read from a byte offset, append durably, find a line by key.

The offset is the checkpoint: only complete lines are ever consumed, so a line still being written by a
producer is read on the next poll, never half.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReadResult:
    records: list[dict[str, Any]]
    rejects: list[tuple[str, str]]  # (raw line, reason)
    offset: int
    more: bool


class JsonLinesFile:
    def __init__(self, path: Path, *, key_field: str = "key") -> None:
        self.path = path
        self.key_field = key_field
        self._lock = threading.Lock()
        self._index: dict[str, int] | None = None
        self._lines = 0

    def read_from(self, offset: int, limit: int) -> ReadResult:
        records: list[dict[str, Any]] = []
        rejects: list[tuple[str, str]] = []
        if not self.path.exists():
            return ReadResult(records, rejects, offset, False)
        with self.path.open("rb") as fh:
            fh.seek(offset)
            while len(records) + len(rejects) < limit:
                line = fh.readline()
                if not line or not line.endswith(b"\n"):
                    return ReadResult(records, rejects, offset, False)
                offset += len(line)
                text = line.decode("utf-8", errors="replace").strip()
                if not text:
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    rejects.append((text, f"line is not valid JSON: {exc.msg} at column {exc.colno}"))
                    continue
                if not isinstance(value, dict):
                    rejects.append((text, f"line is a JSON {type(value).__name__}, expected an object"))
                    continue
                records.append(value)
            more = bool(fh.readline())
        return ReadResult(records, rejects, offset, more)

    def _load_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {}
            self._lines = 0
            if self.path.exists():
                self._drop_partial_tail()
                with self.path.open("rb") as fh:
                    for line in fh:
                        self._lines += 1
                        try:
                            key = json.loads(line).get(self.key_field)
                        except (json.JSONDecodeError, AttributeError):
                            continue
                        if isinstance(key, str):
                            self._index.setdefault(key, self._lines)
        return self._index

    def _drop_partial_tail(self) -> None:
        # A crash in the middle of a write leaves a line without its newline; it was never acknowledged.
        with self.path.open("rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            pos = size - 1
            while pos > 0:
                fh.seek(pos - 1)
                if fh.read(1) == b"\n":
                    break
                pos -= 1
            fh.truncate(pos)

    def find(self, key: str) -> int | None:
        with self._lock:
            return self._load_index().get(key)

    def append(self, record: Mapping[str, Any]) -> int:
        """Append one record and fsync; returns its line number."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            index = self._load_index()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._lines += 1
            key = record.get(self.key_field)
            if isinstance(key, str):
                index.setdefault(key, self._lines)
            return self._lines
