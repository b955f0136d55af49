"""The three simulators by name, built the way ``lead2cash sandbox`` and the tests build them."""

from __future__ import annotations

import importlib
from typing import Any

SYSTEMS = {
    "salesforce": "lead2cash.sandbox.salesforce:SalesforceSandbox",
    "lago": "lead2cash.sandbox.lago:LagoSandbox",
    "sap": "lead2cash.sandbox.sap:SapSandbox",
}


def build_systems(
    seed: int = 42,
    seed_size: int = 200,
    faults_profile: str = "none",
    only: list[str] | None = None,
    factories: dict[str, str] | None = None,
) -> list[Any]:
    """``factories``: system type -> "module:Class" (the CLI passes the sandboxes the system types
    declare; the sandboxes themselves know nothing of the hub's registry)."""
    systems = []
    for name, dotted in (SYSTEMS if factories is None else factories).items():
        if only and name not in only:
            continue
        module, _, cls = dotted.partition(":")
        factory = getattr(importlib.import_module(module), cls)
        systems.append(factory(seed=seed, seed_size=seed_size, faults_profile=faults_profile))
    return systems
