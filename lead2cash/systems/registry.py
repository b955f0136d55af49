"""System types: each declared once, by the name config gives in ``systems.<name>.type``.

A system type is a :class:`SystemType`: its config model, the source objects and target actions it offers
(each with a typed option model), the adapters it ships, the webhooks it receives, its live check and
optionally its sandbox. Everything else is derived from these declarations: the config schema's union of
system types, ``lead2cash config schema`` and ``config docs``, the adapter names routes may use, the web
app's webhook endpoints, ``check --live`` and the sandboxes ``lead2cash sandbox`` starts.

Built-in types and third-party packages register the same way: an entry point in the group
``lead2cash.systems`` naming a :class:`SystemType`. The built-ins are also found without package metadata
(a source checkout that was never installed, or metadata older than the code), from ``BUILTIN``.

The declaration module must not import its system's binding (connectors, clients): the schema is built
from the declarations while ``lead2cash.config`` is being imported, so code is named by dotted path and
imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

GROUP = "lead2cash.systems"

# Built-in types in the order the docs list them; each also has an entry point in pyproject.toml.
BUILTIN: dict[str, str] = {
    "file": "lead2cash.systems.file.system:SYSTEM",
    "python": "lead2cash.systems.python.system:SYSTEM",
    "salesforce": "lead2cash.systems.salesforce.system:SYSTEM",
    "lago": "lead2cash.systems.lago.system:SYSTEM",
    "sap": "lead2cash.systems.sap.system:SYSTEM",
    "hub": "lead2cash.systems.hub.system:SYSTEM",
    "nats": "lead2cash.systems.nats.system:SYSTEM",
}

ANY = "*"  # an operation name that stands for every object (a file name, an sObject, a route)


class AnyOptions(BaseModel):
    """Options the system checks itself (a ``python`` system's factory decides what it accepts)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class NoOptions(BaseModel):
    """No options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Operation:
    """A source object or a target action, with the model its ``options`` are validated against."""

    name: str  # the object or action as config writes it; ANY for every name
    description: str
    options: type[BaseModel] = NoOptions


@dataclass(frozen=True)
class WebhookReceiver:
    """``POST /webhooks/<path>``: one endpoint for every webhook route whose source is a system of this
    type. The sources verify the signature themselves (``WebhookSource.verify_webhook``) and return the
    sender's delivery id, on which the hub deduplicates; the strings here document both."""

    path: str
    signature: str
    dedupe_key: str


@dataclass(frozen=True)
class SystemType:
    name: str  # ``type:`` in config
    description: str
    config: type[BaseModel]  # a pydantic model with ``type: Literal[name]``
    build: str  # "module:function(name, config, context) -> SystemBinding"
    sources: tuple[Operation, ...] = ()
    actions: tuple[Operation, ...] = ()
    adapters: tuple[str, ...] = ()  # modules exporting INBOUND: dict[adapter name, function]
    webhooks: tuple[WebhookReceiver, ...] = ()
    live_check: str | None = None  # "module:function(check, name, binding)", awaited by check --live
    sandbox: str | None = None  # "module:Class(seed=, seed_size=, faults_profile=)"
    origin: str = field(default="", compare=False)  # the entry point or module it came from

    def source(self, object: str) -> Operation | None:
        return _find(self.sources, object)

    def action(self, action: str) -> Operation | None:
        return _find(self.actions, action)


def _find(operations: tuple[Operation, ...], name: str) -> Operation | None:
    exact = [o for o in operations if o.name == name]
    return exact[0] if exact else next((o for o in operations if o.name == ANY), None)


def load(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


class RegistryError(Exception):
    """A declaration that cannot be used (a plugin that does not load, a type declared twice)."""


def _declared(value: Any, where: str, name: str) -> SystemType:
    if not isinstance(value, SystemType):
        raise RegistryError(f"{where} is not a lead2cash SystemType")
    if value.name != name:
        raise RegistryError(f"{where} declares type {value.name!r} under the entry point name {name!r}")
    return SystemType(**{**value.__dict__, "origin": where})


def _load() -> dict[str, SystemType]:
    found: dict[str, SystemType] = {}
    points = {}
    for point in entry_points(group=GROUP):
        if point.name in points and points[point.name].value != point.value:
            raise RegistryError(
                f"system type {point.name!r} is declared twice: {points[point.name].value} and {point.value}"
            )
        points[point.name] = point
    for name, dotted in BUILTIN.items():
        point = points.pop(name, None)
        if point is not None and point.value != dotted:
            raise RegistryError(f"system type {name!r} is built in; {point.value} cannot declare it again")
        found[name] = _declared(load(dotted), dotted, name)
    for name in sorted(points):
        point = points[name]
        try:
            value = point.load()
        except Exception as exc:
            raise RegistryError(f"system type {name!r} ({point.value}) does not load: {exc}") from exc
        found[name] = _declared(value, point.value, name)
    return found


_TYPES: dict[str, SystemType] | None = None


def system_types() -> dict[str, SystemType]:
    """Every registered system type, built-ins first, then the others by name."""
    global _TYPES
    if _TYPES is None:
        # Declarations use the config's building blocks; importing them builds the config schema, which
        # asks for the system types (and fills ``_TYPES``) first.
        import lead2cash.config.schema  # noqa: F401

        if _TYPES is None:
            _TYPES = _load()
    return _TYPES


def system_type(name: str) -> SystemType:
    return system_types()[name]


def check_options(
    spec: SystemType, kind: str, name: str, options: Mapping[str, Any]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems with a route's ``source`` (kind ``object``) or ``target`` (kind ``action``): the name must be
    one the system type offers and the options must fit its model. Paths are relative to the section."""
    operations = spec.sources if kind == "object" else spec.actions
    operation = _find(operations, name)
    if operation is None:
        offered = ", ".join(o.name for o in operations if o.name != ANY)
        what = "source objects" if kind == "object" else "target actions"
        known = f"{spec.name} {what}: {offered}" if offered else f"{spec.name} systems offer no {what}"
        return [((kind,), f"{known}; not {name!r}")]
    try:
        operation.options.model_validate(dict(options))
    except ValidationError as exc:
        return [(("options", *e["loc"]), e["msg"]) for e in exc.errors()]
    return []


def inbound_adapters() -> dict[str, Callable[..., Any]]:
    """Adapters by the name routes give in ``mapping.adapter``: ``canonical`` and every system type's."""
    from lead2cash.adapters import canonical

    found: dict[str, Callable[..., Any]] = {"canonical": canonical.inbound}
    for spec in system_types().values():
        for module in spec.adapters:
            found.update(getattr(importlib.import_module(module), "INBOUND", {}))
    return found


def sandboxes() -> dict[str, str]:
    """System type -> its sandbox class, for the types that ship one."""
    return {name: spec.sandbox for name, spec in system_types().items() if spec.sandbox}
