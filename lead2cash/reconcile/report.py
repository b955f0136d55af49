"""Run history (``history.jsonl``) and the HTML report of a billing reconciliation (inline SVG, no script)."""

from __future__ import annotations

import datetime as dt
import html
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from lead2cash.canonical_model.currency import MINOR_UNITS
from lead2cash.reconcile.billing import Result


def append_history(workdir: Path, result: Result, kind: str = "billing") -> dict[str, Any]:
    """One JSON object per run in ``<workdir>/reconcile/history.jsonl``."""
    path = workdir / "reconcile" / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "kind": kind,
        "cycle": result.cycle,
        "run_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "accuracy": str(result.accuracy),
        "match_rate": str(result.match_rate),
        "threshold": str(result.threshold),
        "passed": result.passed,
        "differences": result.differences.height,
        "compared": result.compared,
    }
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return entry


def read_history(workdir: Path, kind: str = "billing") -> list[dict[str, Any]]:
    path = workdir / "reconcile" / "history.jsonl"
    if not path.exists():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in runs if r.get("kind") == kind]


def _bars(items: list[tuple[str, int, str]], color: str = "#4a7bd0") -> str:
    """Horizontal bars: label, size (an integer: a count or minor units), the text written after the bar."""
    h = 18 * len(items) + 10
    top = max([abs(v) for _, v, _ in items] + [1])
    rows = []
    for i, (label, value, text) in enumerate(items):
        w = 300 * abs(value) / top  # pixels, not money
        rows.append(
            f'<text x="0" y="{18 * i + 14}" font-size="12">{html.escape(label)}</text>'
            f'<rect x="170" y="{18 * i + 3}" width="{w:.1f}" height="13" fill="{color}"/>'
            f'<text x="{175 + w:.1f}" y="{18 * i + 14}" font-size="11">{html.escape(text)}</text>'
        )
    return f'<svg width="620" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'


def money(minor: int | None, currency: str | None) -> str:
    """Minor units in the currency's major unit with its digits: 406300 KWD -> ``406.300 KWD``."""
    if minor is None or currency is None:
        return ""
    digits = MINOR_UNITS.get(currency)
    if digits is None:
        return f"{minor:,} minor units of {currency}"
    return f"{Decimal(minor).scaleb(-digits):,.{digits}f} {currency}"


def _trend(runs: list[dict[str, Any]], threshold: float) -> str:
    """Accuracy per run as a line, the threshold as a dashed line; the cycle under the first and last run
    and wherever it changes."""
    if not runs:
        return "<p>no runs yet</p>"
    values = [float(r["accuracy"]) for r in runs]  # a ratio drawn on a chart, not an amount
    lo = min([*values, threshold]) - 0.005
    hi = 1.0
    w, h, pad = 560, 200, 44

    def y(v: float) -> float:
        return pad / 2 + (h - pad) * (hi - v) / max(hi - lo, 1e-9)

    step = (w - 2 * pad) / max(len(values) - 1, 1)
    pts = " ".join(f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    dots = "".join(
        f'<circle cx="{pad + i * step:.1f}" cy="{y(v):.1f}" r="3" fill="{"#2a8a3a" if r["passed"] else "#c0392b"}">'
        f"<title>{html.escape(r['cycle'])} {html.escape(r['run_at'])}: {v:.4%}</title></circle>"
        for i, (v, r) in enumerate(zip(values, runs, strict=True))
    )
    labels = "".join(
        f'<text x="{pad + i * step:.1f}" y="{h - 4}" font-size="10" text-anchor="middle">'
        f"{html.escape(r['cycle'])}</text>"
        for i, r in enumerate(runs)
        if i in (0, len(runs) - 1) or r["cycle"] != runs[i - 1]["cycle"]
    )
    last = (
        f'<text x="{pad + (len(values) - 1) * step + 6:.1f}" y="{y(values[-1]) - 6:.1f}" font-size="10">'
        f"{values[-1]:.2%}</text>"
    )
    return (
        f'<svg width="{w + 40}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{pad}" x2="{w - pad}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" stroke="#999" stroke-dasharray="4"/>'
        f'<text x="0" y="{y(threshold) + 4:.1f}" font-size="10">{threshold:.2%}</text>'
        f'<text x="0" y="{y(1.0) + 4:.1f}" font-size="10">100%</text>'
        f'<polyline points="{pts}" fill="none" stroke="#4a7bd0" stroke-width="2"/>{dots}{labels}{last}</svg>'
        f"<p>{len(runs)} runs; each dot is one run (green: at or above the threshold).</p>"
    )


def _largest(diffs: pl.DataFrame, per_currency: int = 5) -> str:
    """Per currency (amounts in different currencies do not add up), the customers whose lines differ by
    the largest absolute amount."""
    if diffs.is_empty():
        return "<p>no differences</p>"
    top = (
        diffs.filter(pl.col("delta").is_not_null())
        .group_by("currency", "customer_id")
        .agg(pl.col("delta").abs().sum().alias("abs_delta"), pl.len().alias("n"))
        .sort("abs_delta", "customer_id", descending=[True, False])
    )
    out = []
    # Currencies in code order: sums in two currencies do not compare.
    for (currency,), part in sorted(top.group_by("currency"), key=lambda g: str(g[0][0])):
        part = part.head(per_currency)
        out.append(f"<h3>{html.escape(str(currency))}</h3>")
        out.append(
            _bars(
                [
                    (f"{c} ({n} line{'s' if n > 1 else ''})", d, money(d, str(currency)))
                    for c, d, n in part.select("customer_id", "abs_delta", "n").iter_rows()
                ],
                color="#c0392b",
            )
        )
    across = diffs.filter(pl.col("delta").is_null()).height
    if across:
        out.append(
            f"<p>{across:,} lines billed in another currency are not summed here (cause: currency).</p>"
        )
    return "".join(out)


def _sample(diffs: pl.DataFrame, per_cause: int = 5) -> str:
    """The largest differences of each cause, amounts in major units."""
    sample = (
        diffs.with_columns(pl.col("delta").abs().alias("_size"))
        .sort("cause", "_size", "customer_id", descending=[False, True, False], nulls_last=True)
        .group_by("cause", maintain_order=True)
        .head(per_cause)
    )
    rows = []
    for r in sample.iter_rows(named=True):
        cur = r["currency"]
        cells = [
            r["cause"], r["customer_id"], r["contract_id"], str(r["period_start"]),
            money(r["legacy_amount"], cur), money(r["new_amount"], cur), money(r["delta"], cur),
            money(r["tax_delta"], cur),
        ]  # fmt: skip
        rows.append(
            "<tr>" + "".join(f"<td class=n>{html.escape(str(v or ''))}</td>" for v in cells)
            + f"<td>{html.escape(str(r['evidence'] or ''))}</td></tr>"
        )  # fmt: skip
    return (
        "<table><tr><th>cause</th><th>customer</th><th>contract</th><th>period</th><th>legacy</th>"
        f"<th>new</th><th>amount, new - legacy</th><th>tax, new - legacy</th><th>evidence</th></tr>{''.join(rows)}</table>"
    )


def write_report(out: Path, result: Result, runs: list[dict[str, Any]]) -> Path:
    """``report.html``: accuracy trend, differences by cause, largest customers affected, per segment, the
    largest differences of each cause."""
    diffs = result.differences
    seg_rows = "".join(
        f"<tr><td>{html.escape(s['segment'])}</td><td>{s['compared']:,}</td><td>{s['accuracy']}</td><td>{s['match_rate']}</td></tr>"
        for s in result.by_segment
    )
    status = "passed" if result.passed else "FAILED"
    causes = sorted(result.by_cause.items(), key=lambda x: -x[1])
    explained = set(result.explained_causes)
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>Billing reconciliation {result.cycle}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px;text-align:left}}td.n{{white-space:nowrap}}</style>
</head><body><h1>Billing reconciliation, cycle {html.escape(result.cycle)}: {status}</h1>
<p>Accuracy {result.accuracy:.4%} (threshold {result.threshold:.2%}); exact match {result.match_rate:.4%};
{result.compared:,} lines compared, {diffs.height:,} differences ({result.explained:,} explained by a documented rule).</p>
<h2>Accuracy across runs</h2>{_trend(runs, float(result.threshold))}
<h2>Differences by cause</h2>{_bars([(c + (" (explained)" if c in explained else ""), n, f"{n:,}") for c, n in causes])}
<h2>Largest customers affected, per currency</h2>{_largest(diffs)}
<h2>By segment</h2><table><tr><th>segment</th><th>lines</th><th>accuracy</th><th>exact match</th></tr>{seg_rows}</table>
<h2>Largest differences of each cause</h2>{_sample(diffs)}
<p>All {diffs.height:,} differences: <a href="differences.csv">differences.csv</a> (amounts in minor units),
<a href="differences.parquet">differences.parquet</a>.</p>
</body></html>"""
    path = out / "report.html"
    path.write_text(body)
    return path
