"""The identity adapter: records that are already canonical entities in their JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


def inbound(record: Mapping[str, Any], options: Mapping[str, Any]) -> Mapping[str, Any]:
    """A canonical record, optionally wrapped: ``options.path`` names the member that holds it."""
    path = options.get("path")
    if path:
        inner = record.get(path)
        if not isinstance(inner, Mapping):
            raise ValueError(f"{path}: expected an object holding the canonical entity")
        return inner
    return record


def outbound(entity: BaseModel, key: str) -> dict[str, Any]:
    return {"key": key, "entity_type": type(entity).__name__, "entity": entity.model_dump(mode="json")}
