"""Legacy migration figures: generate, profile, cleanse, validate (seconds, peak RSS), the gates side by side
with the same checks in pandera on pandas over the same cleansed data (the anchor), detection precision and
recall per defect class against the manifest, and the load rate into a Lago sandbox limited to 50 req/s.

    .venv/bin/python bench/migration.py --sizes 10000 [400000 4000000] [--load-customers 300]

Each step runs in a child process of its own, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "migration" / "legacy.yaml"
# Gates written both ways (the anchor has no lazy engine, so each takes what it needs as pandas frames).
ANCHORED = [
    "customer_required",
    "customer_unique",
    "country_iso",
    "currency_iso",
    "email_valid",
    "phone_e164",
    "tax_id_format",
    "encoding_clean",
    "contract_customer_exists",
    "contract_plan_mapped",
    "contract_price_positive",
    "contract_currency_matches",
    "contract_not_future",
    "invoice_total_lines",
]


def _child(step: str, work: str, size: int, q: Any) -> None:
    from lead2cash.migration import engine, reports
    from lead2cash.migration.config import load_config

    t0 = time.perf_counter()
    out: Any = None
    w = Path(work)
    cfg = load_config(CONFIG)
    if step == "generate":
        from lead2cash.sandbox.legacy import export, generate

        db = generate(size, seed=7)
        export(db, w / "legacy")
    elif step == "profile":
        reports.profile(w / "legacy", ["CUSTMAST", "CONTRACT", "INVHDR", "INVLINE"], w / "profile")
    elif step == "cleanse":
        engine.cleanse(cfg, w / "legacy", w / "cleansed")
    elif step == "validate":
        results, _ = engine.validate(cfg, w / "cleansed", True, w / "validation")
        out = {r.name: r.seconds for r in results}
    elif step == "gates":
        tables = engine.Tables(cfg, w / "cleansed", True)
        gates = [g for g in cfg.gates if g.name in ANCHORED]
        t0 = time.perf_counter()
        out = {g.name: set(engine.run_check(g, tables)[0]["record_id"].to_list()) for g in gates}
    elif step == "pandera":
        out = _pandera(cfg, w / "cleansed")
        t0 = out.pop("__t0")
    q.put((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, out))


def _pandera(cfg: Any, cleansed: Path) -> dict[str, Any]:
    import pandas as pd
    import pandera.pandas as pa
    import polars as pl

    from lead2cash.migration.engine import E164, EMAIL, MOJIBAKE_SIGN, TAX_ID_PATTERNS

    def frame(table: str) -> pd.DataFrame:
        df = pl.read_parquet(cleansed / table / "*.parquet")
        df = df.with_columns(pl.col(pl.Decimal).cast(pl.Float64))  # pandas has no decimal column type
        return df.to_pandas()

    cust, contr, inv, lines = (
        frame("customers"),
        frame("contracts"),
        frame("invoices"),
        frame("invoice_lines"),
    )
    t0 = time.perf_counter()
    countries = sorted(set(cfg.value_maps["countries"].values()))
    currencies = sorted(set(cfg.value_maps["currencies"].values()))

    def tax_ok(df: pd.DataFrame) -> pd.Series:
        ok = pd.Series(False, index=df.index)
        for iso, pattern in TAX_ID_PATTERNS.items():
            m = df["country"] == iso
            ok[m] = df.loc[m, "tax_id"].fillna("").str.match(pattern)
        return ok

    c_schema = pa.DataFrameSchema(
        {
            "customer_id": pa.Column(
                str, pa.Check(lambda s: ~s.duplicated(keep=False), name="customer_unique", ignore_na=False)
            ),
            "country": pa.Column(
                str, pa.Check.isin(countries, name="country_iso", ignore_na=False), nullable=True
            ),
            "currency": pa.Column(
                str, pa.Check.isin(currencies, name="currency_iso", ignore_na=False), nullable=True
            ),
        },
        checks=[
            pa.Check(
                lambda df: (
                    df[["customer_id", "name", "currency", "country"]].notna().all(axis=1)
                    & (df[["customer_id", "name", "currency", "country"]] != "").all(axis=1)
                ),
                name="customer_required",
            ),
            pa.Check(tax_ok, name="tax_id_format", ignore_na=False),
            # ignore_na=False everywhere: pandera skips nulls by default; the gates count them as failures.
            pa.Check(
                lambda df: df["email"].str.match(EMAIL).fillna(False).astype(bool),
                name="email_valid",
                ignore_na=False,
            ),
            pa.Check(lambda df: df["phone"].str.match(E164).fillna(False).astype(bool), name="phone_e164"),
            pa.Check(
                lambda df: (
                    ~(
                        df["name"].str.contains(MOJIBAKE_SIGN, na=False)
                        | df["city"].str.contains(MOJIBAKE_SIGN, na=False)
                    )
                ),
                name="encoding_clean",
            ),
        ],
    )
    ids = set(cust["customer_id"])
    acc = cust.set_index("customer_id")["currency"]
    as_of = pd.Timestamp(cfg.as_of)
    k_schema = pa.DataFrameSchema(
        {
            "customer_id": pa.Column(
                str, pa.Check(lambda s: s.isin(ids), name="contract_customer_exists", ignore_na=False)
            ),
            "product": pa.Column(
                str,
                pa.Check(lambda s: s.notna(), name="contract_plan_mapped", ignore_na=False),
                nullable=True,
            ),
            "price": pa.Column(
                float,
                pa.Check(lambda s: s.isna() | (s > 0), name="contract_price_positive", ignore_na=False),
                nullable=True,
            ),
            "start_on": pa.Column(
                "datetime64[ms]",
                pa.Check(lambda s: s.isna() | (s <= as_of), name="contract_not_future", ignore_na=False),
                nullable=True,
                coerce=True,
            ),
        },
        checks=[
            pa.Check(
                lambda df: df["customer_id"].map(acc).isna() | (df["currency"] == df["customer_id"].map(acc)),
                name="contract_currency_matches",
            )
        ],
    )
    sums = lines.groupby("invoice_id")["amount"].sum()
    i_schema = pa.DataFrameSchema(
        checks=[
            pa.Check(
                lambda df: (
                    df["net"].isna() | ((df["net"] - df["invoice_id"].map(sums).fillna(0)).abs() < 1e-6)
                ),
                name="invoice_total_lines",
            )
        ]
    )
    found: dict[str, set[str]] = {g: set() for g in ANCHORED}
    for schema, df, key in (
        (c_schema, cust, "customer_id"),
        (k_schema, contr, "contract_id"),
        (i_schema, inv, "invoice_id"),
    ):
        try:
            schema.validate(df, lazy=True)
        except pa.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            for check, index in zip(fc["check"], fc["index"], strict=True):
                if check in found and index is not None:
                    found[str(check)].add(str(df[key].iloc[int(index)]))
    return {"__t0": t0, **found}


def run(step: str, work: Path, size: int) -> tuple[float, float, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(step, str(work), size, q))
    p.start()
    result = q.get()
    p.join()
    return result


def load_rate(work: Path, customers: int) -> str:
    """Load a slice of the cleansed data into a Lago sandbox that allows 50 requests/s."""
    from lead2cash.sandbox.lago import LagoSandbox
    from lead2cash.sandbox.server import SandboxCluster

    small = work / "load"
    cmd = [sys.executable, "-m", "lead2cash.cli", "migrate"]
    subprocess.run(
        [*cmd, "generate", "--customers", str(customers), "--workdir", str(small)],
        check=True,
        capture_output=True,
    )
    subprocess.run([*cmd, "cleanse", "--workdir", str(small)], check=True, capture_output=True)
    subprocess.run([*cmd, "validate", "--workdir", str(small)], check=True, capture_output=True)
    lago = LagoSandbox(seed=1, seed_size=0, rate_limit_per_s=50)
    cluster = SandboxCluster(systems=[lago], state_dir=Path(tempfile.mkdtemp()))
    cluster.start_in_thread()
    try:
        out = subprocess.run(
            [
                *cmd,
                "load",
                "--workdir",
                str(small),
                "--lago-url",
                cluster.base_url("lago") + "/api/v1",
                "--lago-api-key",
                lago.api_key,
                "--ca-bundle",
                str(cluster.ca_bundle),
                "--rate",
                "50",
            ],
            check=True,
            capture_output=True,
            text=True,
            env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"},
        )
    finally:
        cluster.stop()
    return next(line for line in out.stdout.splitlines() if line.startswith("loaded"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--load-customers", type=int, default=300)
    parser.add_argument(
        "--skip-anchor", action="store_true", help="No pandera run (it needs the data in memory)."
    )
    args = parser.parse_args()
    import polars as pl

    from lead2cash.migration import engine

    for size in args.sizes:
        work = Path(tempfile.mkdtemp(prefix="l2c-migration-"))
        try:
            print(f"\n== {size:,} customers ==")
            for step in ("generate", "profile", "cleanse", "validate"):
                seconds, rss, _ = run(step, work, size)
                print(f"{step:9s} {seconds:8.2f} s   peak RSS {rss:8.0f} MiB")
            q = pl.read_parquet(work / "validation" / "quarantine.parquet")
            scores = engine.score(
                engine.detections(q, work / "cleansed"), pl.read_parquet(work / "legacy" / "manifest.parquet")
            )
            print("defect class            injected    found  precision  recall")
            for defect, s in scores.items():
                print(
                    f"{defect:22s} {s['injected']:9,} {s['found']:8,} {s['precision']:10.4f} {s['recall']:7.4f}"
                )
            g_s, g_rss, ours = run("gates", work, size)
            line = f"gates ({len(ANCHORED)}): lead2cash (Polars) {g_s:.3f} s, peak RSS {g_rss:.0f} MiB"
            if not args.skip_anchor:
                p_s, p_rss, theirs = run("pandera", work, size)
                same = all(ours[g] == theirs[g] for g in ANCHORED)
                differ = [(g, len(ours[g] ^ theirs[g])) for g in ANCHORED if ours[g] != theirs[g]]
                line += f" | pandera on pandas {p_s:.3f} s, peak RSS {p_rss:.0f} MiB | ratio {p_s / g_s:.1f}x | same failing records: {same} {differ or ''}"
            print(line)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if args.load_customers:
        work = Path(tempfile.mkdtemp(prefix="l2c-migration-load-"))
        try:
            print(
                f"\nload ({args.load_customers:,} customers, Lago sandbox limited to 50 requests/s): {load_rate(work, args.load_customers)}"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
