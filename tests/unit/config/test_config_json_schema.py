"""The JSON Schema ``lead2cash config schema`` prints accepts every configuration the product ships or
writes, checked by a real JSON Schema validator (not by the pydantic models it is derived from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.config import json_schema
from lead2cash.systems.registry import load, sandboxes, system_types

ROOT = Path(__file__).resolve().parents[3]
HUB_SECTIONS = {"version", "state", "logging", "web", "systems", "mappings", "routes"}
# Hub configuration files under config/ (config/tests/ holds config tests and config/migration/ migration
# mappings, other formats checked by their own loaders).
SHIPPED = sorted(
    p
    for p in (ROOT / "config").rglob("*.yaml")
    if not {"tests", "migration"} & set(p.relative_to(ROOT / "config").parts)
)


def _validator() -> jsonschema.protocols.Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _problems(document: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message[:200]}" for e in _validator().iter_errors(document)]


def test_there_are_shipped_files_to_check() -> None:
    assert {p.name for p in SHIPPED} >= {"lead-to-cash.yaml", "mappings.yaml", "systems.example.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_file_is_valid_under_the_schema(path: Path) -> None:
    document = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert set(document) <= HUB_SECTIONS
    assert _problems(document) == []


def test_the_systems_the_sandboxes_print_are_valid_under_the_schema() -> None:
    # What `lead2cash sandbox --write-systems` and `make demo` write: each sandbox's hub_config().
    systems: dict[str, Any] = {"hub": {"type": "hub"}}
    for kind, dotted in sandboxes().items():
        entry = load(dotted)(seed=1, seed_size=1, faults_profile="none").hub_config("https://127.0.0.1:8443")
        systems[kind] = {**entry, "ca_bundle": "/tmp/ca.pem"}
    assert {"salesforce", "lago", "sap"} <= set(systems)
    assert "webhook_hmac_key" in systems["lago"]  # the flat alias is what is checked here
    assert _problems(json.loads(json.dumps({"systems": systems}, default=str))) == []


def test_the_schema_rejects_what_the_models_reject() -> None:
    assert _problems({"routes": [{"name": "r", "retry": {"initial_backoff": "soon"}}]})
    assert _problems({"systems": {"x": {"type": "no-such-type"}}})
    assert _problems({"systems": {"l": {"type": "lago", "base_url": "https://l", "api_key": "k", "typo": 1}}})


def test_every_registered_system_type_is_in_the_schema() -> None:
    text = json.dumps(json_schema())
    for kind in system_types():
        assert f'"const": "{kind}"' in text or f'"enum": ["{kind}"]' in text, kind


def test_config_schema_prints_the_schema() -> None:
    printed = CliRunner().invoke(app, ["config", "schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == json_schema()
