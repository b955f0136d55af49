"""The system registry: built-ins found with or without package metadata, a type declared twice refused,
a route's options checked against the operation's model with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lead2cash.config import ConfigError
from lead2cash.hub import Hub
from lead2cash.systems import registry
from lead2cash.systems.registry import BUILTIN, RegistryError, check_options, system_type


class _Point:
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def load(self) -> Any:
        return registry.load(self.value)


def test_built_ins_are_found_without_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    assert list(registry._load()) == list(BUILTIN)


def test_the_installed_entry_points_name_every_built_in() -> None:
    from importlib.metadata import entry_points

    declared = {p.name: p.value for p in entry_points(group=registry.GROUP)}
    assert {k: declared.get(k) for k in BUILTIN} == BUILTIN


def test_a_type_declared_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    other = _Point("lago", "lead2cash.systems.sap.system:SYSTEM")
    monkeypatch.setattr(registry, "entry_points", lambda group: [other])
    with pytest.raises(RegistryError, match="'lago' is built in"):
        registry._load()


def test_an_entry_point_under_another_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: [_Point("billing", BUILTIN["lago"])])
    with pytest.raises(RegistryError, match="declares type 'lago' under the entry point name 'billing'"):
        registry._load()


def test_options_are_checked_against_the_operations_model() -> None:
    sap = system_type("sap")
    assert check_options(sap, "action", "journal_entry.post", {"long_references": "tail"}) == []
    [(path, message)] = check_options(sap, "action", "journal_entry.post", {"long_references": "cut"})
    assert path == ("options", "long_references") and "'reject' or 'tail'" in message
    [(path, message)] = check_options(sap, "action", "invoice.post", {})
    assert (
        path == ("action",)
        and "journal_entry.post, journal_entry.reverse, payment.clear, payment_record.clear, credit_note.refund, "
        "wallet_credits.void, business_partner.ensure"
        in message
    )
    lago = system_type("lago")
    [(path, _)] = check_options(lago, "object", "invoices", {"refund": True})
    assert path == ("options", "refund")


def test_a_wrong_option_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        f"""state: {{url: "sqlite:///{tmp_path / "s.db"}"}}
systems:
  files: {{type: file, directory: data}}
routes:
  - name: copy
    source: {{system: files, object: orders}}
    mapping: {{adapter: canonical, entity: Order}}
    target:
      system: files
      action: append
      options: {{objekt: out}}
    idempotency_key: "order:{{id}}"
"""
    )
    with pytest.raises(ConfigError) as raised:
        Hub.from_files([path], configure_logs=False)
    text = str(raised.value)
    assert "hub.yaml:11" in text and "target.options.objekt" in text and "target.options.object" in text
