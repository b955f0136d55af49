"""``lead2cash test`` and ``lead2cash check --live`` end to end: the CLI, the shipped config and tests, the
three sandboxes over real sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.demo.environment import LeadToCash

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "config"
ROUTE_FILES = [CONFIG / "mappings.yaml", CONFIG / "lead-to-cash.yaml"]
runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeadToCash]:
    """The sandboxes as `make demo` runs them, and the systems file it writes for them."""
    env = LeadToCash(tmp_path_factory.mktemp("config-tests"), seed=42, seed_size=30)
    yield env
    env.close()


def _run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.slow
def test_shipped_config_tests_pass_against_the_sandboxes(demo: LeadToCash) -> None:
    code, out = _run("test", demo.systems_file, *ROUTE_FILES, "--tests", CONFIG / "tests")
    assert code == 0, out
    summary = re.search(r"(\d+) passed, (\d+) failed", out)
    assert summary is not None, out
    passed, failed = int(summary.group(1)), int(summary.group(2))
    assert failed == 0 and passed >= 15
    # The delivery tests really ran, and their faults really fired.
    assert "lago:invoices.create:commit_then_drop x1" in out
    assert "sap:journal_entry.post:429" in out
    assert out.count("(sandbox,") >= 6


def test_a_broken_expectation_fails_with_a_diff_naming_the_field(demo: LeadToCash, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        f"""tests:
  - name: wrong currency
    route: won-opportunity-to-billing
    input: {{file: {CONFIG / "tests/fixtures/salesforce-opportunity-won.json"}}}
    expect:
      canonical: {{currency: EUR, lines: [{{}}, {{}}, {{}}, {{product_code: ONB-STD}}]}}
      target: {{subscriptions: [{{plan_code: PLAT-BASE__EUR}}, {{}}]}}
  - name: right key
    route: won-opportunity-to-billing
    input: {{file: {CONFIG / "tests/fixtures/salesforce-opportunity-won.json"}}}
    expect: {{key: "order:006Dx0000000006IAA:v{{version}}", target: {{invoice_metadata: {{lead2cash_key: "{{key}}"}}}}}}
  - name: a version pinned by hand
    route: won-opportunity-to-billing
    input: {{file: {CONFIG / "tests/fixtures/salesforce-opportunity-won.json"}}}
    expect: {{key: "order:006Dx0000000006IAA:v1"}}
"""
    )
    code, out = _run("test", demo.systems_file, *ROUTE_FILES, "--tests", tmp_path / "broken.yaml")
    assert code == 1
    assert 'canonical.currency: expected "EUR", got "USD"' in out
    assert 'target.subscriptions[0].plan_code: expected "PLAT-BASE__EUR", got "PLAT-BASE__USD"' in out
    assert "FAIL  won-opportunity-to-billing > wrong currency" in out
    assert "broken.yaml:2" in out
    assert 'key: expected "order:006Dx0000000006IAA:v1", got "order:006Dx0000000006IAA:v' in out
    assert "1 passed, 2 failed" in out


def test_a_delivery_test_that_fails_says_what_the_sandbox_saw(demo: LeadToCash, tmp_path: Path) -> None:
    fixture = CONFIG / "tests/fixtures/lago-invoice-one-off-created.json"
    (tmp_path / "twice.yaml").write_text(
        f"""tests:
  - name: expects two postings
    route: posted-invoice-to-ledger
    sandbox: true
    input: {{file: {fixture}}}
    expect:
      delivered: once
      effects: {{sap: {{journal_entry.post: {{"1710:LEA-A290-005-001": 2}}}}}}
"""
    )
    code, out = _run("test", demo.systems_file, *ROUTE_FILES, "--tests", tmp_path / "twice.yaml")
    assert code == 1
    assert "effects.sap.journal_entry.post[1710:LEA-A290-005-001]: expected 2, got 1" in out


def test_test_file_errors_name_the_line(demo: LeadToCash, tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text(
        "tests:\n  - name: x\n    route: won-opportunity-to-billing\n    input: {record: {}}\n    expcet: {}\n"
    )
    code, out = _run("test", demo.systems_file, *ROUTE_FILES, "--tests", tmp_path / "typo.yaml")
    assert code == 1
    assert "typo.yaml:5: tests.0.expcet: unknown key (misspelt?)" in out


def test_check_live_passes_for_the_shipped_config(demo: LeadToCash) -> None:
    code, out = _run("check", "--live", demo.systems_file, *ROUTE_FILES)
    assert code == 0, out
    assert "ok: salesforce:" in out and "ok: lago:" in out and "ok: sap:" in out


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_check_live_flags_a_misspelt_writeback_field_with_file_and_line(
    demo: LeadToCash, tmp_path: Path
) -> None:
    systems = json.loads(demo.systems_file.read_text())
    systems["systems"]["salesforce"]["writeback_fields"] = {"invoice_number": "Billing_Invoice_Numbr__c"}
    path = tmp_path / "systems.yaml"
    path.write_text(json.dumps(systems, indent=2))
    code, out = _run("check", "--live", path, *ROUTE_FILES)
    assert code == 1
    line = _line_of(path, "Billing_Invoice_Numbr__c")
    assert (
        f"{path}:{line}:" in out
        and "systems.salesforce.writeback_fields.invoice_number: Opportunity has no field Billing_Invoice_Numbr__c"
        in out
    ), out


def test_check_live_flags_an_unknown_plan_code_with_file_and_line(demo: LeadToCash, tmp_path: Path) -> None:
    mappings = tmp_path / "mappings.yaml"
    text = (CONFIG / "mappings.yaml").read_text()
    mappings.write_text(
        text.replace(
            '_default: "{product_code}__{currency}"',
            '_default: "{product_code}__{currency}"\n    PLAT-PRO: "PLATFORM-PRO__{currency}"',
        )
    )
    code, out = _run("check", "--live", demo.systems_file, mappings, CONFIG / "lead-to-cash.yaml")
    assert code == 1
    line = _line_of(mappings, "PLATFORM-PRO")
    assert f"{mappings}:{line}:" in out and "mappings.lago_plans.PLAT-PRO:" in out
    assert "Lago has no plan 'PLATFORM-PRO__USD' (for product PLAT-PRO in USD)" in out
    assert "PLAT-BASE" not in out  # only the wrong entry is reported


def test_check_live_skips_an_unreachable_system(demo: LeadToCash, tmp_path: Path) -> None:
    systems = json.loads(demo.systems_file.read_text())
    systems["systems"]["sap"]["odata"] = {
        "business_partner": "https://127.0.0.1:9/sap/opu/odata/sap/API_BUSINESS_PARTNER"
    }
    path = tmp_path / "systems.yaml"
    path.write_text(json.dumps(systems, indent=2))
    code, out = _run("check", "--live", path, *ROUTE_FILES)
    assert code == 0, out
    assert "skipped: sap not reachable" in out


def test_check_live_reports_a_bug_in_the_check_as_a_bug_not_as_an_unreachable_system(
    demo: LeadToCash, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lead2cash.connectors.lago import LagoClient

    def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'LagoClient' object has no attribute 'bind_loop'")

    monkeypatch.setattr(LagoClient, "pages", broken)
    result = runner.invoke(app, ["check", "--live", str(demo.systems_file), *map(str, ROUTE_FILES)])
    assert result.exit_code != 0
    assert isinstance(result.exception, AttributeError)
    assert "not reachable" not in result.output
