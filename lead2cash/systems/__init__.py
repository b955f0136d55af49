"""Systems: one package per system type (``lead2cash/systems/<type>/``), each declaring the type once in
its ``system.py`` (config model, sources, actions, adapters, webhooks, live check, sandbox; see
``registry``) and building its connector and adapter into the sources and targets routes use in its
``binding.py``. Together with ``hub.py`` this is the only place where connectors and adapters meet; routes
see only ``Source`` and ``Target``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# The config schema is built from the system types' declarations; loading it first means a declaration
# module imported directly (before any config) is not met half-initialised by the registry.
import lead2cash.config  # noqa: F401  (isort: skip)
from lead2cash.observability import Metrics

if TYPE_CHECKING:  # the config schema imports this package: no store or routes at import time
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
    config_dirs: Sequence[Path] = ()  # where code named by config is looked for when not installed


def import_dotted(dotted: str, search: Sequence[Path] = ()) -> Any:
    """``package.module:attr``; a module that is not installed is looked for next to the config files, so a
    mapping function can live beside the route that names it."""
    module, _, attr = dotted.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name != top or not search:
            raise
    added = [str(d) for d in search if str(d) not in sys.path]
    sys.path[:0] = added
    try:
        return getattr(importlib.import_module(module), attr)
    finally:
        for d in added:
            sys.path.remove(d)


def builder(system_type: str) -> Any:
    """The registered type's ``build(name, config, context) -> SystemBinding``."""
    from lead2cash.systems.registry import load
    from lead2cash.systems.registry import system_type as spec

    return load(spec(system_type).build)
