"""``profile`` (JSON and an HTML report with charts) and ``plan`` (the data mapping document, Markdown and
HTML), both computed with one lazy Polars query per table."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import polars as pl

from lead2cash.migration.config import MigrationConfig
from lead2cash.migration.engine import MOJIBAKE_SIGN, canonical, cleanse_table, legacy_frame


def _kind(pattern: str) -> str:
    if not pattern:
        return "blank"
    if set(pattern) == {"9"} and len(pattern) == 8:
        return "date YYYYMMDD?"
    if set(pattern) <= set("9.,- "):
        return "amount/number"
    return "text"


def profile_table(lf: pl.LazyFrame) -> dict[str, Any]:
    cols = lf.collect_schema().names()
    n = int(lf.select(pl.len()).collect().item())
    aggs: list[pl.Expr] = []
    for c in cols:
        s = pl.col(c).cast(pl.String)
        aggs += [
            s.null_count().alias(f"{c}|null"),
            (s.str.strip_chars() == "").sum().alias(f"{c}|blank"),
            s.n_unique().alias(f"{c}|distinct"),
            s.str.strip_chars().min().alias(f"{c}|min"),
            s.str.strip_chars().max().alias(f"{c}|max"),
            (s != s.str.strip_chars()).sum().alias(f"{c}|padded"),
            s.str.contains(MOJIBAKE_SIGN).sum().alias(f"{c}|mojibake"),
        ]
    stats = lf.select(aggs).collect().row(0, named=True)
    columns = []
    for c in cols:
        s = pl.col(c).cast(pl.String).str.strip_chars()
        top = lf.group_by(s.alias("v")).len().sort("len", descending=True).head(5).collect()
        pat = (
            lf.group_by(s.str.replace_all(r"[0-9]", "9").str.replace_all(r"[A-Za-z]", "A").alias("p"))
            .len()
            .sort("len", descending=True)
            .head(5)
            .collect()
        )
        patterns = [{"pattern": p, "count": k} for p, k in pat.iter_rows()]
        columns.append(
            {
                "column": c,
                "type_found": _kind(str(patterns[0]["pattern"] or "")) if patterns else "empty",
                "null_rate": stats[f"{c}|null"] / n if n else 0.0,
                "blank_rate": (stats[f"{c}|blank"] or 0) / n if n else 0.0,
                "distinct": stats[f"{c}|distinct"],
                "min": stats[f"{c}|min"],
                "max": stats[f"{c}|max"],
                "top_values": [{"value": v, "count": k} for v, k in top.iter_rows()],
                "patterns": patterns,
                "suspicious": {"space_padded": stats[f"{c}|padded"], "mojibake": stats[f"{c}|mojibake"]},
            }
        )
    return {"rows": n, "columns": columns}


def profile(source: str | Path, tables: list[str], out: Path) -> dict[str, Any]:
    report = {"source": str(source), "tables": {t: profile_table(legacy_frame(source, t)) for t in tables}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "profile.html").write_text(_profile_html(report))
    return report


def _figure(value: float, unit: str) -> str:
    return f"{value:.1f}{unit}" if unit else f"{int(value):,}"  # a count is a whole number


def _bars(items: list[tuple[str, float]], unit: str = "%") -> str:
    """A horizontal bar chart as inline SVG (no script, opens anywhere)."""
    h = 18 * len(items) + 10
    rows = []
    top = max([v for _, v in items] + [1e-9])
    for i, (label, value) in enumerate(items):
        w = 300 * value / top
        rows.append(
            f'<text x="0" y="{18 * i + 14}" font-size="12">{html.escape(label)}</text>'
            f'<rect x="160" y="{18 * i + 3}" width="{w:.1f}" height="13" fill="#4a7bd0"/>'
            f'<text x="{165 + w:.1f}" y="{18 * i + 14}" font-size="11">{_figure(value, unit)}</text>'
        )
    return f'<svg width="560" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'


def _profile_html(report: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Legacy profile</title>",
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style>",
        f"<h1>Profile of {html.escape(report['source'])}</h1>",
    ]
    for table, t in report["tables"].items():
        parts.append(f"<h2>{table} ({t['rows']:,} rows)</h2><h3>Empty values (null or blank)</h3>")
        parts.append(_bars([(c["column"], 100 * (c["null_rate"] + c["blank_rate"])) for c in t["columns"]]))
        parts.append(
            "<h3>Distinct values</h3>"
            + _bars([(c["column"], float(c["distinct"])) for c in t["columns"]], "")
        )
        parts.append(
            "<table><tr><th>column</th><th>type found</th><th>null</th><th>blank</th><th>distinct</th>"
            "<th>min</th><th>max</th><th>top values</th><th>patterns</th><th>suspicious</th></tr>"
        )
        for c in t["columns"]:
            top = ", ".join(f"{html.escape(str(v['value']))} ({v['count']})" for v in c["top_values"])
            pats = ", ".join(f"{html.escape(str(p['pattern']))} ({p['count']})" for p in c["patterns"])
            sus = ", ".join(f"{k}: {v}" for k, v in c["suspicious"].items() if v)
            parts.append(
                f"<tr><td>{c['column']}</td><td>{c['type_found']}</td><td>{c['null_rate']:.2%}</td>"
                f"<td>{c['blank_rate']:.2%}</td><td>{c['distinct']}</td><td>{html.escape(str(c['min']))}</td>"
                f"<td>{html.escape(str(c['max']))}</td><td>{top}</td><td>{pats}</td><td>{sus}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def mapping_document(cfg: MigrationConfig, source: str | Path, out: Path, samples: int = 3) -> str:
    """The data mapping document: every legacy column -> canonical field with transform, cleanse rules,
    value map and rule, sample values before and after; unmapped columns; coverage; value maps; gates."""
    md = [
        f"# Data mapping: legacy billing -> Lago\n\nMapping file: `{cfg.path}`. Business date: {cfg.as_of}.\n"
    ]
    total_cols = mapped_cols = 0
    for table, tm in cfg.tables.items():
        legacy = legacy_frame(source, tm.legacy)
        columns = legacy.collect_schema().names()
        used = {f.source for f in tm.fields.values()}
        total_cols += len(columns)
        mapped_cols += len(used & set(columns))
        before = legacy.head(samples).collect()
        after, _ = cleanse_table(canonical(cfg, source, table).head(samples).collect(), table, cfg)
        md.append(f"## {table} (legacy `{tm.legacy}`, key `{tm.key}`)\n")
        md.append(
            "| legacy column | canonical field | transform | cleanse | value map | rule | before | after |"
        )
        md.append("|---|---|---|---|---|---|---|---|")
        for f in tm.fields.values():
            b = (
                " / ".join(repr(str(v).strip()) for v in before[f.source].to_list())
                if f.source in before.columns
                else ""
            )
            a = " / ".join(repr(str(v)) for v in after[f.name].to_list())
            md.append(
                f"| {f.source} | {f.name} | {', '.join(f.transform) or '-'} | {', '.join(f.cleanse) or '-'} "
                f"| {f.value_map or '-'} | {f.rule or '-'} | {b.replace('|', '/')} | {a.replace('|', '/')} |"
            )
        unmapped = [c for c in columns if c not in used]
        md.append(
            "\nUnmapped legacy columns: "
            + (", ".join(f"`{c}` ({tm.unmapped.get(c, 'no reason given')})" for c in unmapped) or "none")
            + "\n"
        )
    md.append(
        f"## Coverage\n\n{mapped_cols} of {total_cols} legacy columns mapped ({mapped_cols / max(total_cols, 1):.0%}).\n"
    )
    md.append("## Value maps\n")
    for name, mapping in cfg.value_maps.items():
        md.append(f"- **{name}**: " + ", ".join(f"`{k}` -> `{v}`" for k, v in mapping.items()))
    md.append("\n## Duplicate parties\n")
    md.append(
        "Two customers are the same party when they agree on any of: "
        + "; ".join(" + ".join(f"`{k}`" for k in keys) for keys in cfg.duplicates.get("match_keys") or [])
        + f". The survivor is the {cfg.duplicates.get('survivor')}; "
        + "summed into it: "
        + (", ".join(f"`{c}`" for c in cfg.duplicates.get("sum") or []) or "nothing")
        + ".\n"
    )
    md.append(
        "## Quality gates\n\n| gate | table | check | max failure rate | defect class | waiver |\n|---|---|---|---|---|---|"
    )
    for g in cfg.gates:
        waiver = f"{g.waiver['reason']} ({g.waiver['by']})" if g.waiver else "-"
        md.append(f"| {g.name} | {g.table} | {g.check} | {g.max_rate:g} | {g.defect or '-'} | {waiver} |")
    text = "\n".join(md) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mapping.md").write_text(text)
    (out / "mapping.html").write_text(_md_html(text))
    return text


def _md_html(text: str) -> str:
    """The mapping document's Markdown as HTML (CommonMark with tables, by markdown-it, which rich
    already brings): inline code, emphasis and lists render as such, not as literal marks."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return (
        "<!doctype html><meta charset='utf-8'><title>Data mapping</title>\n"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}code{background:#f3f3f3}</style>\n" + body
    )
