"""Config of a system provided by Python code (``type: python``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from lead2cash.config.base import DottedPath, Strict


class PythonSystemConfig(Strict):
    """A system provided by Python code: ``factory`` returns an object with ``source(object, options)`` and
    ``target(action, options)``."""

    type: Literal["python"]
    factory: DottedPath
    options: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
