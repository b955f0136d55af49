"""Transforms, cleanse rules, gates and the mapping file's errors; detection against the manifest."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from lead2cash.config.errors import ConfigError
from lead2cash.migration import engine
from lead2cash.migration.config import load_config
from lead2cash.sandbox.legacy import DEFECT_CLASSES, export, generate
from lead2cash.sandbox.legacy.generator import mojibake

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "migration" / "legacy.yaml"


def test_amount_formats() -> None:
    raw = [
        "1234.50",
        "1,234.50",
        "1.234,50",
        "   72000",
        "-459.00",
        "152.500",
        "N/A",
        "12.34.56",
        "1O0.00",
        "",
        None,
    ]
    got = pl.select(engine.parse_amount(pl.Series(raw, dtype=pl.String))).to_series().to_list()
    assert got[:6] == [
        Decimal("1234.5"),
        Decimal("1234.5"),
        Decimal("1234.5"),
        Decimal("72000"),
        Decimal("-459"),
        Decimal("152.5"),
    ]
    assert got[6:] == [None] * 5


def test_rules() -> None:
    cfg = load_config(CONFIG)
    df = pl.DataFrame(
        {
            "name": [mojibake("MÜLLER  KÖNIG"), "ACME"],
            "phone": ["030 123456", "(201) 555-0123"],
            "country": ["DE", "US"],
        }
    )
    assert engine.apply_rule(df, "name", "repair_encoding", cfg).to_list() == ["MÜLLER  KÖNIG", "ACME"]
    assert engine.apply_rule(df, "name", "collapse_spaces", cfg).to_list()[1] == "ACME"
    assert engine.apply_rule(df, "phone", "e164", cfg).to_list() == ["+4930123456", "+12015550123"]
    countries = pl.DataFrame({"country": ["DEUTSCHLAND", "ATLANTIS"]})
    assert engine.apply_rule(countries, "country", "value_map:countries", cfg).to_list() == ["DE", None]


def test_broken_mapping_names_file_line_and_field(tmp_path: Path) -> None:
    text = (
        CONFIG.read_text()
        .replace("cleanse: [lower]", "cleanse: [lowercase]")
        .replace("check: overlap", "check: overlaps")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "lowercase" in t)
    assert f"{bad}:{line}:" in message and "tables.customers.fields.email.cleanse" in message
    assert "unknown check 'overlaps'" in message


def test_gates_fail_dirty_pass_cleansed_and_detect_every_injected_defect(tmp_path: Path) -> None:
    db = generate(3000, seed=21)
    export(db, tmp_path / "legacy")
    cfg = load_config(CONFIG)
    raw, _ = engine.validate(cfg, tmp_path / "legacy", False, tmp_path / "raw")
    failed = {r.name for r in raw if not r.passed}
    assert {"country_iso", "duplicate_parties", "encoding_clean", "open_balance_control"} <= failed
    engine.cleanse(cfg, tmp_path / "legacy", tmp_path / "clean", batch_rows=1000)  # several batches
    results, quarantine = engine.validate(cfg, tmp_path / "clean", True, tmp_path / "val")
    assert all(r.passed for r in results), [r.name for r in results if not r.passed]
    assert quarantine["payload"].is_not_null().all() and quarantine["reason"].is_not_null().all()
    scores = engine.score(engine.detections(quarantine, tmp_path / "clean"), db.manifest)
    assert set(scores) == set(DEFECT_CLASSES)
    for defect, s in scores.items():
        assert s["recall"] == 1.0 and s["precision"] >= 0.999, (defect, s)
    changes = pl.read_parquet(tmp_path / "clean" / "changes" / "*.parquet")
    assert {"repair_encoding", "e164", "value_map:countries", "duplicates:merged_into"} <= set(
        changes["rule"]
    )


def test_two_contracts_on_one_unmapped_plan_are_no_overlap(tmp_path: Path) -> None:
    # Many customers get two contracts whose plan codes are both unknown (and often the same code): that is
    # the plan gate's failure; the overlap gate must name only the injected overlaps.
    db = generate(3000, seed=8, rates={"unknown_plan_code": 0.3})
    export(db, tmp_path / "legacy")
    cfg = load_config(CONFIG)
    engine.cleanse(cfg, tmp_path / "legacy", tmp_path / "clean")
    _, quarantine = engine.validate(cfg, tmp_path / "clean", True, tmp_path / "val")
    scores = engine.score(engine.detections(quarantine, tmp_path / "clean"), db.manifest)
    assert scores["overlapping_contract"]["precision"] == 1.0, scores["overlapping_contract"]
    assert scores["unknown_plan_code"]["recall"] == 1.0


def test_the_mapping_document_renders_its_markdown_as_html(tmp_path: Path) -> None:
    from lead2cash.migration.reports import mapping_document, profile

    export(generate(200, seed=3), tmp_path / "legacy")
    cfg = load_config(CONFIG)
    mapping_document(cfg, tmp_path / "legacy", tmp_path / "plan")
    page = (tmp_path / "plan" / "mapping.html").read_text()
    # Code, bold and tables render as elements; no literal Markdown marks left in the text a reader sees.
    assert "<code>CUSTMAST</code>" in page and "<strong>countries</strong>" in page
    assert page.count("<table>") >= 5 and "`" not in page and "**" not in page
    profile(tmp_path / "legacy", ["CUSTMAST"], tmp_path / "profile")
    chart = (tmp_path / "profile" / "profile.html").read_text()
    assert ">200<" in chart and ">200.0<" not in chart  # a distinct count is a whole number
