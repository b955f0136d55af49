"""Hub configs that post canonical invoices to the SAP sandbox (imported by the tests of this folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROUTE = {
    "name": "invoices-to-sap",
    "source": {"system": "mem", "object": "invoices", "trigger": {"type": "poll", "interval": "1s"}},
    "filter": "status == 'finalized'",
    "mapping": {"adapter": "canonical", "entity": "Invoice"},
    "target": {"system": "s4", "action": "journal_entry.post"},
    "idempotency_key": "invoice:{id}:v{version}",
    "ordering_key": "{customer.id}",
    "batch_size": 100,
    "concurrency": 16,
    "retry": {"attempts": 40, "initial_backoff": "5ms", "max_backoff": "100ms", "jitter": "5ms"},
}


def sap_system(cluster: Any, **overrides: Any) -> dict[str, Any]:
    """The sandbox's own ``hub_config()``, as the hub takes it."""
    cfg = dict(cluster.hub_config()["sap"])
    cfg["tax_code_by_catalog_code"] = {**cfg["tax_code_by_catalog_code"], "ZERO_RATED": "A0"}
    cfg.update(overrides)
    return cfg


def oauth_auth(cluster: Any) -> dict[str, Any]:
    running = cluster.running["sap"]
    return dict(running.system.oauth_config(running.base_url))


def write_config(tmp_path: Path, system: dict[str, Any], route: dict[str, Any] | None = None) -> Path:
    config = {
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "logging": {"level": "WARNING"},
        "systems": {"mem": {"type": "python", "factory": "doubles:memory_system"}, "s4": system},
        "routes": [route or ROUTE],
    }
    path = tmp_path / "sap-route.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path
