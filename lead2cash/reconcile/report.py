"""Run history (``history.jsonl``) and the HTML report of a billing reconciliation (inline SVG, no script)."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import polars as pl

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


def _bars(items: list[tuple[str, float]], fmt: str = "{:,.0f}", color: str = "#4a7bd0") -> str:
    h = 18 * len(items) + 10
    top = max([abs(v) for _, v in items] + [1e-9])
    rows = []
    for i, (label, value) in enumerate(items):
        w = 300 * abs(value) / top
        rows.append(
            f'<text x="0" y="{18 * i + 14}" font-size="12">{html.escape(label)}</text>'
            f'<rect x="170" y="{18 * i + 3}" width="{w:.1f}" height="13" fill="{color}"/>'
            f'<text x="{175 + w:.1f}" y="{18 * i + 14}" font-size="11">{fmt.format(value)}</text>'
        )
    return f'<svg width="620" height="{h}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>'


def _trend(runs: list[dict[str, Any]], threshold: float) -> str:
    """Accuracy per run as a line, the threshold as a dashed line."""
    if not runs:
        return "<p>no runs yet</p>"
    values = [float(r["accuracy"]) for r in runs]
    lo = min([*values, threshold]) - 0.005
    hi = 1.0
    w, h, pad = 560, 180, 40

    def y(v: float) -> float:
        return pad / 2 + (h - pad) * (hi - v) / max(hi - lo, 1e-9)

    step = (w - 2 * pad) / max(len(values) - 1, 1)
    pts = " ".join(f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    dots = "".join(
        f'<circle cx="{pad + i * step:.1f}" cy="{y(v):.1f}" r="3" fill="{"#2a8a3a" if r["passed"] else "#c0392b"}">'
        f"<title>{html.escape(r['cycle'])} {html.escape(r['run_at'])}: {v:.4%}</title></circle>"
        for i, (v, r) in enumerate(zip(values, runs, strict=True))
    )
    return (
        f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{pad}" x2="{w - pad}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" stroke="#999" stroke-dasharray="4"/>'
        f'<text x="0" y="{y(threshold) + 4:.1f}" font-size="10">{threshold:.2%}</text>'
        f'<text x="0" y="{y(1.0) + 4:.1f}" font-size="10">100%</text>'
        f'<polyline points="{pts}" fill="none" stroke="#4a7bd0" stroke-width="2"/>{dots}</svg>'
    )


def write_report(out: Path, result: Result, runs: list[dict[str, Any]]) -> Path:
    """``report.html``: accuracy trend, differences by cause, largest customers affected, per segment."""
    diffs = result.differences
    top = (
        diffs.group_by("customer_id", "currency")
        .agg(pl.col("delta").abs().sum().alias("abs_delta"), pl.len().alias("n"))
        .sort("abs_delta", "customer_id", descending=[True, False])
        .head(15)
    )
    seg_rows = "".join(
        f"<tr><td>{html.escape(s['segment'])}</td><td>{s['compared']:,}</td><td>{s['accuracy']}</td><td>{s['match_rate']}</td></tr>"
        for s in result.by_segment
    )
    sample = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in diffs.select("cause", "customer_id", "contract_id", "period_start", "delta", "evidence")
        .head(50)
        .iter_rows()
    )
    status = "passed" if result.passed else "FAILED"
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>Billing reconciliation {result.cycle}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px}}</style>
</head><body><h1>Billing reconciliation, cycle {html.escape(result.cycle)}: {status}</h1>
<p>Accuracy {result.accuracy:.4%} (threshold {result.threshold:.2%}); exact match {result.match_rate:.4%};
{result.compared:,} lines compared, {diffs.height:,} differences ({result.explained:,} explained by a documented rule).</p>
<h2>Accuracy across runs</h2>{_trend(runs, float(result.threshold))}
<h2>Differences by cause</h2>{_bars([(c, float(n)) for c, n in sorted(result.by_cause.items(), key=lambda x: -x[1])])}
<h2>Largest customers affected (absolute amount difference, minor units)</h2>
{_bars([(f"{c} {cur} ({n})", float(d)) for c, cur, d, n in top.select("customer_id", "currency", "abs_delta", "n").iter_rows()], color="#c0392b")}
<h2>By segment</h2><table><tr><th>segment</th><th>lines</th><th>accuracy</th><th>exact match</th></tr>{seg_rows}</table>
<h2>First differences</h2><table><tr><th>cause</th><th>customer</th><th>contract</th><th>period</th><th>delta</th><th>evidence</th></tr>{sample}</table>
</body></html>"""
    path = out / "report.html"
    path.write_text(body)
    return path
