"""Adapters by the name routes use in ``mapping.adapter``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from lead2cash.adapters import canonical

InboundAdapter = Callable[[Mapping[str, Any], Mapping[str, Any]], BaseModel | Mapping[str, Any]]

INBOUND: dict[str, InboundAdapter] = {
    "canonical": canonical.inbound,
}
