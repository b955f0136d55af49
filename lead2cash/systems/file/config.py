"""Config of a file system (``type: file``)."""

from __future__ import annotations

from typing import Literal

from lead2cash.config.base import Strict


class FileSystemConfig(Strict):
    """JSON Lines files in a directory: a source reads ``<object>.jsonl``, a target appends to it."""

    type: Literal["file"]
    directory: str
