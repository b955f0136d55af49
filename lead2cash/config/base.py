"""Building blocks of the config schema shared by every section and system type."""

from __future__ import annotations

import re
from typing import Annotated, Any

import jmespath
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DOTTED = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 10s, 5m")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration such as 500ms, 10s, 5m, 1h; got {value!r}")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


# In the JSON Schema a duration is what the files may say: seconds, or a number with a unit.
_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
    ],
    "examples": ["10s", "500ms"],
}
Duration = Annotated[
    float, BeforeValidator(_duration), Field(ge=0), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]


def _jmespath(value: Any) -> Any:
    if isinstance(value, str):
        try:
            jmespath.compile(value)
        except jmespath.exceptions.JMESPathError as exc:
            raise ValueError(f"invalid JMESPath expression: {exc}") from None
    return value


JMESPath = Annotated[str, BeforeValidator(_jmespath), Field(description="a JMESPath expression")]


def _key_template(value: Any) -> Any:
    if isinstance(value, str):
        placeholders = re.findall(r"\{([^{}]+)\}", value)
        if not placeholders:
            raise ValueError(
                "expected a template with at least one {expression}, e.g. 'order:{id}:v{version}'"
            )
        for expr in placeholders:
            _jmespath(expr.strip())
    return value


KeyTemplateStr = Annotated[str, BeforeValidator(_key_template)]


def _dotted(value: Any) -> Any:
    if isinstance(value, str) and not _DOTTED.match(value):
        raise ValueError("expected 'package.module:function'")
    return value


DottedPath = Annotated[str, BeforeValidator(_dotted)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,99}$")]
