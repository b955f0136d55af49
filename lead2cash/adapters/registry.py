"""Adapters by the name routes use in ``mapping.adapter``.

Each system's adapter module exports ``INBOUND: dict[str, InboundAdapter]`` with names prefixed by the
system (``salesforce.opportunity``, ``lago.invoice``); they are collected here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from lead2cash.adapters import canonical

InboundAdapter = Callable[[Mapping[str, Any], Mapping[str, Any]], BaseModel | Mapping[str, Any]]

_SYSTEM_MODULES = (
    "lead2cash.adapters.salesforce",
    "lead2cash.adapters.lago",
    "lead2cash.adapters.sap",
    "lead2cash.adapters.hub",
    "lead2cash.adapters.usage",
)


def _collect() -> dict[str, InboundAdapter]:
    found: dict[str, InboundAdapter] = {"canonical": canonical.inbound}
    for name in _SYSTEM_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.update(getattr(module, "INBOUND", {}))
    return found


INBOUND: dict[str, InboundAdapter] = _collect()
