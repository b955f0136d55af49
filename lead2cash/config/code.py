"""The Python code a config names (``python`` systems' factories, mapping functions, RFC connection
factories), found and checked without running it: ``lead2cash check`` uses this unless told to import.

A module is looked for as the hub imports it (installed first, then next to the config files, for the
names the hub looks for there), its source is parsed with ``ast`` and the name must be defined at its top
level. Nothing is imported, so no module code runs (not even a package's ``__init__``).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lead2cash.config.sap import SapSystemConfig
from lead2cash.config.schema import HubConfig
from lead2cash.systems.python.config import PythonSystemConfig

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class CodeRef:
    path: Loc  # where the config names it
    dotted: str  # "package.module:name"
    beside_config: bool  # also looked for next to the config files (as the hub does for this kind)


def code_references(config: HubConfig) -> list[CodeRef]:
    refs: list[CodeRef] = []
    for name, system in config.systems.items():
        if isinstance(system, PythonSystemConfig):
            refs.append(CodeRef(("systems", name, "factory"), system.factory, True))
        elif isinstance(system, SapSystemConfig) and system.rfc and system.rfc.connection_factory:
            refs.append(
                CodeRef(("systems", name, "rfc", "connection_factory"), system.rfc.connection_factory, False)
            )
    for i, route in enumerate(config.routes):
        if route.enabled and route.mapping.function:
            refs.append(CodeRef(("routes", i, "mapping", "function"), route.mapping.function, True))
    return refs


@dataclass(frozen=True)
class Found:
    problem: str | None = None  # the reference cannot work
    note: str | None = None  # found, but not inspected (no Python source)


def locate(ref: CodeRef, config_dirs: Sequence[Path]) -> Found:
    """Find ``ref`` without importing anything; a problem says what is missing, with the file looked at."""
    module, _, attr = ref.dotted.partition(":")
    loaded = sys.modules.get(module)
    if loaded is not None:  # already imported by this process: looking at it runs nothing
        return Found() if hasattr(loaded, attr) else Found(f"module {module!r} has no attribute {attr!r}")
    spec = _find_spec(module, None)
    if spec is None and ref.beside_config:
        spec = _find_spec(module, [str(d) for d in config_dirs])
    if spec is None:
        where = " (installed, or next to the config files)" if ref.beside_config else " (installed)"
        return Found(f"cannot find module {module!r}{where}")
    origin = spec.origin
    if not origin or not origin.endswith(".py"):
        return Found(note=f"{ref.dotted}: {origin or module} has no Python source; not inspected")
    try:
        tree = ast.parse(Path(origin).read_bytes(), filename=origin)
    except (OSError, ValueError) as exc:  # SyntaxError is a ValueError
        line = getattr(exc, "lineno", None)
        return Found(f"cannot parse {origin}{f':{line}' if line else ''}: {getattr(exc, 'msg', exc)}")
    names = _top_level_names(tree.body)
    if attr in names or "*" in names or "__getattr__" in names:
        return Found()
    return Found(f"{origin} defines no top-level name {attr!r}")


def _find_spec(module: str, locations: list[str] | None) -> importlib.machinery.ModuleSpec | None:
    """The module's spec, walking packages by their search locations: no parent package is imported.
    ``locations`` None: where ``import`` looks (``sys.meta_path``)."""
    parts = module.split(".")
    spec: importlib.machinery.ModuleSpec | None = None
    search: list[str] | None = locations
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        try:
            if i == 0 and search is None:
                spec = importlib.util.find_spec(name)  # a top-level name: nothing is imported to find it
            else:
                spec = importlib.machinery.PathFinder.find_spec(name, search)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        if i < len(parts) - 1:
            found = spec.submodule_search_locations
            if found is None:
                return None
            search = list(found)
    return spec


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.AsyncWith):
            # Definitions made under a condition or a try (an optional dependency's fallback).
            for block in ("body", "orelse", "finalbody"):
                names |= _top_level_names(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                names |= _top_level_names(handler.body)
    return names
