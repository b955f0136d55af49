"""The configuration reference is generated from the schema and the committed copy is current."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.config.reference import collect, describe, render, system_types

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_current() -> None:
    # When this fails: lead2cash config docs > docs/configuration.md
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `lead2cash config docs > docs/configuration.md`"
    )


def test_every_system_type_section_and_field_is_documented() -> None:
    text = render()
    sections = collect()
    assert system_types(sections) == ["file", "python", "salesforce", "lago", "sap", "hub", "nats"]
    for kind in system_types(sections):
        assert f"## System type `{kind}`" in text
    for section in sections:
        for name, field in section.model.model_fields.items():
            assert f"| `{name}` |" in text, f"{section.model.__name__}.{name} is missing"
            assert describe(section.model, name, field), f"{section.model.__name__}.{name} has no description"
    # Nested models are reached through every union and container: triggers, SAP auth kinds, Lago webhook.
    names = {s.model.__name__ for s in sections}
    assert {"WebhookTrigger", "ScheduleTrigger", "SapOAuth", "LagoWebhookConfig", "RetryConfig"} <= names


def test_defaults_types_and_links_read_as_written_in_yaml() -> None:
    text = render()
    assert "| `interval` | duration | `10s` |" in text
    assert "| `lease` | duration | `2m` |" in text
    assert "| `sweep_interval` | duration or null | `6h` |" in text
    assert "| `api_key` | secret | **required** |" in text
    assert "| `on_failure` | `dead-letter` \\| `halt-route` | `dead-letter` |" in text
    assert "[`routes[].retry`](#routesretry)" in text
    assert "### `routes[].retry`" in text


def test_config_docs_prints_or_writes_the_reference(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["config", "docs"])
    assert printed.exit_code == 0 and printed.stdout == render()
    out = tmp_path / "configuration.md"
    written = runner.invoke(app, ["config", "docs", "--output", str(out)])
    assert written.exit_code == 0 and out.read_text(encoding="utf-8") == render()
