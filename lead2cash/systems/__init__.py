"""System bindings: the composition root's per-system part. A binding builds a system's connector and
pairs it with its adapter into the sources and targets routes use. Together with ``hub.py`` this is the
only place where connectors and adapters meet; routes see only ``Source`` and ``Target``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lead2cash.observability import Metrics
from lead2cash.routes.interfaces import Source, Target
from lead2cash.store import Store


class SystemBinding(Protocol):
    """What the hub needs of a configured system: sources for objects, targets for actions."""

    def source(self, object: str, options: Mapping[str, Any]) -> Source: ...

    def target(self, action: str, options: Mapping[str, Any]) -> Target: ...


@dataclass
class BindingContext:
    """What a binding may use besides its own config."""

    store: Store | None  # cross-references, receipts; None while only checking config
    tables: Mapping[str, Mapping[str, Any]]  # the config's named value maps (product -> plan, ...)
    base_dir: Path  # relative paths in config resolve against the first config file's folder
    metrics: Metrics = field(default_factory=Metrics)


# type in config -> "module:function(name, config, context) -> SystemBinding"
BUILDERS: dict[str, str] = {
    "salesforce": "lead2cash.systems.salesforce.binding:build",
    "lago": "lead2cash.systems.lago.binding:build",
    "sap": "lead2cash.systems.sap.binding:build",
    "hub": "lead2cash.systems.hub.binding:build",
}


def builder(system_type: str) -> Any:
    module, _, attr = BUILDERS[system_type].partition(":")
    return getattr(importlib.import_module(module), attr)
