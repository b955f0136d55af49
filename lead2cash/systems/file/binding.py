"""A ``file`` system: JSON Lines files in a directory (the smallest route's source and target)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lead2cash.adapters import canonical
from lead2cash.connectors.file import JsonLinesFile
from lead2cash.routes.interfaces import Source, SourceBatch, Target
from lead2cash.systems import BindingContext
from lead2cash.systems.file.config import FileSystemConfig


class FileSource:
    def __init__(self, name: str, file: JsonLinesFile) -> None:
        self.name = name
        self.file = file

    @staticmethod
    def parse_checkpoint(value: str) -> str:
        """An operator's checkpoint: a line offset (a whole number)."""
        if not (value.isascii() and value.isdigit()):
            raise ValueError(f"not a line offset: {value!r}; expected a whole number")
        return str(int(value))

    async def read(self, checkpoint: str | None, limit: int) -> SourceBatch:
        result = self.file.read_from(int(checkpoint or 0), limit)
        return SourceBatch(result.records, str(result.offset), more=result.more, rejects=result.rejects)


class FileTarget:
    def __init__(self, name: str, file: JsonLinesFile) -> None:
        self.name = name
        self.file = file

    async def deliver(self, entity: BaseModel, key: str) -> str | None:
        return f"line:{self.file.append(canonical.outbound(entity, key))}"

    async def lookup(self, entity: BaseModel, key: str) -> str | None:
        line = self.file.find(key)
        return f"line:{line}" if line is not None else None


class FileSystem:
    def __init__(self, name: str, config: FileSystemConfig, base_dir: Path) -> None:
        self.name = name
        directory = Path(config.directory)
        self.directory = directory if directory.is_absolute() else base_dir / directory
        self._files: dict[str, JsonLinesFile] = {}

    def _file(self, object: str) -> JsonLinesFile:
        if object not in self._files:
            self._files[object] = JsonLinesFile(self.directory / f"{object}.jsonl")
        return self._files[object]

    def source(self, object: str, options: Mapping[str, Any]) -> Source:
        return FileSource(f"{self.name}/{object}", self._file(object))

    def target(self, action: str, options: Mapping[str, Any]) -> Target:
        if action != "append":
            raise ValueError(f"file systems support the action 'append', not {action!r}")
        obj = options.get("object")
        if not isinstance(obj, str):
            raise ValueError("options.object: name the file (without .jsonl) to append to")
        return FileTarget(f"{self.name}/{obj}", self._file(obj))


def build(name: str, config: FileSystemConfig, context: BindingContext) -> FileSystem:
    return FileSystem(name, config, context.base_dir)
