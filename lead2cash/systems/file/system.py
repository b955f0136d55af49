"""The ``file`` system type: JSON Lines files in a directory."""

from __future__ import annotations

from pydantic import Field

from lead2cash.config.base import Strict
from lead2cash.systems.file.config import FileSystemConfig
from lead2cash.systems.registry import ANY, NoOptions, Operation, SystemType


class AppendOptions(Strict):
    object: str = Field(description="the file appended to, without .jsonl")


SYSTEM = SystemType(
    name="file",
    description="JSON Lines files in a directory: a source reads <object>.jsonl, a target appends to it.",
    config=FileSystemConfig,
    build="lead2cash.systems.file.binding:build",
    sources=(Operation(ANY, "the records of <object>.jsonl, in order", NoOptions),),
    actions=(Operation("append", "the canonical entity appended as one line", AppendOptions),),
)
