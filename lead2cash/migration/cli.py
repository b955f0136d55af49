"""``lead2cash migrate``: generate, profile, plan, cleanse, validate, load, status, rollback.

Every step reads and writes under ``--workdir`` (default ``.state/migration``): ``legacy/`` (the extract),
``profile/``, ``plan/``, ``cleansed/``, ``validation-legacy/`` and ``validation/``, and ``ledger.db`` (the
effect ledger, unless ``--store`` names another state store). Heavy imports wait for the command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

migrate_app = typer.Typer(
    help="Legacy billing migration: profile, map, cleanse, validate, load, roll back.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

WORKDIR = Path(".state/migration")
CONFIG = Path("config/migration/legacy.yaml")
Workdir = Annotated[Path, typer.Option("--workdir", help="Where every step reads and writes.")]
ConfigOpt = Annotated[Path, typer.Option("--config", help="The mapping file.")]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Legacy extract: a directory of <TABLE>.parquet/.csv or a SQLAlchemy URL (default: <workdir>/legacy).",
    ),
]
LEGACY_TABLES = ["CUSTMAST", "CONTRACT", "RATEPLAN", "INVHDR", "INVLINE", "PAYMENT", "GLBAL"]


def _config(path: Path) -> Any:
    from lead2cash.config.errors import ConfigError
    from lead2cash.migration.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None


def _source(workdir: Path, source: str | None) -> str:
    return source or str(workdir / "legacy")


@migrate_app.command()
def generate(
    customers: Annotated[int, typer.Option(help="Legacy accounts (duplicates come on top).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Same seed, same database.")] = 7,
    workdir: Workdir = WORKDIR,
    sql: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the legacy database (default: SQLite <workdir>/legacy.db)."),
    ] = None,
    csv: Annotated[bool, typer.Option(help="Also export CSV.")] = False,
) -> None:
    """Write a legacy billing database with injected defects, its Parquet (and CSV) export and the manifest."""
    from lead2cash.sandbox.legacy import export, write_sql
    from lead2cash.sandbox.legacy import generate as gen

    db = gen(customers, seed=seed)
    export(db, workdir / "legacy", ("parquet", "csv") if csv else ("parquet",))
    url = sql or f"sqlite:///{(workdir / 'legacy.db').resolve()}"
    write_sql(db, url)
    console.print(
        f"legacy database: {', '.join(f'{t} {n:,}' for t, n in db.stats.items())}; defects: {db.manifest.height:,} (manifest {workdir / 'legacy' / 'manifest.parquet'})",
        markup=False,
    )


@migrate_app.command()
def profile(workdir: Workdir = WORKDIR, source: SourceOpt = None) -> None:
    """Per table and column: type found, null/blank rates, distinct, top values, patterns, min/max, suspicious values."""
    from lead2cash.migration.reports import profile as run

    report = run(_source(workdir, source), LEGACY_TABLES, workdir / "profile")
    for table, t in report["tables"].items():
        sus = sum(sum(c["suspicious"].values()) for c in t["columns"])
        console.print(
            f"{table}: {t['rows']:,} rows, {len(t['columns'])} columns, {sus:,} suspicious values",
            markup=False,
        )
    console.print(f"report: {workdir / 'profile' / 'profile.html'} and profile.json", markup=False)


@migrate_app.command()
def plan(config: ConfigOpt = CONFIG, workdir: Workdir = WORKDIR, source: SourceOpt = None) -> None:
    """Render the data mapping document (Markdown and HTML) from the mapping file."""
    from lead2cash.migration.reports import mapping_document

    text = mapping_document(_config(config), _source(workdir, source), workdir / "plan")
    coverage = next(line for line in text.splitlines() if "legacy columns mapped" in line)
    console.print(f"{coverage} Document: {workdir / 'plan' / 'mapping.md'} and mapping.html", markup=False)


@migrate_app.command()
def cleanse(
    config: ConfigOpt = CONFIG,
    workdir: Workdir = WORKDIR,
    source: SourceOpt = None,
    batch_rows: Annotated[int, typer.Option(help="Rows cleansed at a time (memory stays flat).")] = 200_000,
) -> None:
    """Apply the declared cleanse rules and merge duplicate parties; every change goes to cleansed/changes/."""
    from lead2cash.migration.engine import cleanse as run

    result = run(_config(config), _source(workdir, source), workdir / "cleansed", batch_rows=batch_rows)
    console.print(
        f"cleansed in {result.seconds:.2f} s: {result.rows}; {result.changes:,} changes logged, {result.merged:,} duplicate parties merged",
        markup=False,
    )


@migrate_app.command()
def validate(
    config: ConfigOpt = CONFIG,
    workdir: Workdir = WORKDIR,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="Validate the legacy extract as it is (before cleansing).")
    ] = False,
    source: SourceOpt = None,
) -> None:
    """Run the quality gates; exit 1 when a gate fails (and nothing may be loaded)."""
    from lead2cash.migration.engine import validate as run

    cfg = _config(config)
    src = _source(workdir, source) if legacy else (source or str(workdir / "cleansed"))
    out = workdir / ("validation-legacy" if legacy else "validation")
    results, quarantine = run(cfg, src, not legacy, out)
    table = Table("gate", "table", "failed", "of", "max rate", "result", "example")
    for r in results:
        verdict = (
            "waived"
            if r.waived and r.failed / max(r.total, 1) > r.max_rate
            else ("pass" if r.passed else "FAIL")
        )
        example = r.examples[0]["reason"] if r.examples else ""
        table.add_row(
            r.name, r.table, f"{r.failed:,}", f"{r.total:,}", f"{r.max_rate:g}", verdict, example[:70]
        )
    console.print(table)
    console.print(
        f"quarantined: {quarantine['record_id'].n_unique():,} records ({out / 'quarantine.parquet'}); report {out / 'validation.json'}",
        markup=False,
    )
    if not all(r.passed for r in results):
        err.print("quality gates failed: nothing may be loaded", markup=False)
        raise typer.Exit(1)


def _lago(url: str | None, api_key: str | None, ca_bundle: str | None) -> Any:
    from lead2cash.connectors.lago import LagoClient

    url = url or os.environ.get("LAGO_API_URL")
    key = api_key or os.environ.get("LAGO_API_KEY")
    if not url or not key:
        err.print("Lago needs --lago-url and --lago-api-key (or LAGO_API_URL and LAGO_API_KEY)", markup=False)
        raise typer.Exit(2)
    return LagoClient(url, key, ca_bundle=ca_bundle)


def _store(workdir: Path, store: str | None) -> Any:
    from lead2cash.store.store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    return Store(store or f"sqlite:///{(workdir / 'ledger.db').resolve()}")


LagoUrl = Annotated[
    str | None, typer.Option("--lago-url", help="Lago API base, e.g. https://host/api/v1 (env LAGO_API_URL).")
]
LagoKey = Annotated[
    str | None, typer.Option("--lago-api-key", help="Lago API key (env LAGO_API_KEY; never printed).")
]
CaBundle = Annotated[str | None, typer.Option("--ca-bundle", help="CA bundle for Lago's TLS certificate.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", help="State store URL holding the effect ledger (default: SQLite <workdir>/ledger.db)."
    ),
]
RunOpt = Annotated[str, typer.Option("--run", help="Name of this migration run (the ledger's route).")]


@migrate_app.command()
def load(
    workdir: Workdir = WORKDIR,
    lago_url: LagoUrl = None,
    lago_api_key: LagoKey = None,
    ca_bundle: CaBundle = None,
    store: StoreOpt = None,
    run: RunOpt = "legacy",
    rate: Annotated[
        float, typer.Option(help="Lago requests per second (Lago's default limit is 50 per organization).")
    ] = 50.0,
    batch_size: Annotated[int, typer.Option(help="Customers per ledger batch.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Customers in flight.")] = 8,
) -> None:
    """Load the validated customers and contracts into Lago exactly once; rerun after a crash to resume."""
    import asyncio

    from lead2cash.migration.load import Loader, LoadRefused
    from lead2cash.migration.load import plan as load_plan

    try:
        customers, contracts = load_plan(workdir / "cleansed", workdir / "validation")
    except LoadRefused as exc:
        err.print(f"load refused: {exc}", markup=False)
        raise typer.Exit(2) from None
    client, ledger = _lago(lago_url, lago_api_key, ca_bundle), _store(workdir, store)

    async def go() -> Any:
        try:
            return await Loader(client, ledger, run, rate=rate).run(
                customers, contracts, batch_size=batch_size, concurrency=concurrency, progress=err.is_terminal
            )
        finally:
            await client.aclose()

    report = asyncio.run(go())
    rate_s = report.customers / report.seconds if report.seconds else 0.0
    per = report.lago_calls / max(report.customers, 1)
    console.print(
        f"loaded {report.customers:,} customers, {report.subscriptions:,} subscriptions in {report.seconds:.1f} s "
        f"({rate_s:.1f} customers/s, {per:.2f} Lago calls per customer); sent {report.sent:,}, already done "
        f"{report.already_done:,}, found by lookup {report.found_by_lookup:,}, failed {len(report.failures):,}",
        markup=False,
    )
    if report.preexisting:
        sample = ", ".join(report.preexisting[:5]) + (", ..." if len(report.preexisting) > 5 else "")
        n = len(report.preexisting)
        were = (
            "customer was already in Lago and was left as it was"
            if n == 1
            else ("customers were already in Lago and were left as they were")
        )
        console.print(
            f"{n:,} {were} (contracts loaded; rollback keeps the customer): {sample}",
            markup=False,
        )
    (workdir / "load.json").write_text(json.dumps(report.json(), indent=2))
    if report.failures:
        for f in report.failures[:10]:
            err.print(f"failed: {f['key']}: {f['error']}", markup=False)
        raise typer.Exit(1)


@migrate_app.command()
def status(workdir: Workdir = WORKDIR, store: StoreOpt = None, run: RunOpt = "legacy") -> None:
    """Where each batch of the load stands in the effect ledger."""
    from lead2cash.migration.load import status as run_status

    rows = run_status(_store(workdir, store), run)
    table = Table("batch", "reserved", "sent (in doubt)", "confirmed")
    for r in rows:
        # Negative batches are the subscriptions a cutover after a rollback re-created (<contract>~N).
        name = f"cutover {-r['batch']}" if r["batch"] < 0 else str(r["batch"])
        table.add_row(name, str(r["reserved"]), str(r["sent"]), str(r["confirmed"]))
    console.print(table)
    done = sum(1 for r in rows if r["reserved"] == r["sent"] == 0)
    console.print(f"{done} of {len(rows)} batches complete", markup=False)


@migrate_app.command()
def rollback(
    workdir: Workdir = WORKDIR,
    lago_url: LagoUrl = None,
    lago_api_key: LagoKey = None,
    ca_bundle: CaBundle = None,
    store: StoreOpt = None,
    run: RunOpt = "legacy",
    rate: Annotated[float, typer.Option(help="Lago requests per second.")] = 50.0,
) -> None:
    """Delete from Lago what the load created (by the ledger): subscriptions, then customers."""
    import asyncio

    from lead2cash.migration.load import rollback as run_rollback

    client, ledger = _lago(lago_url, lago_api_key, ca_bundle), _store(workdir, store)

    async def go() -> dict[str, int]:
        try:
            return await run_rollback(client, ledger, run, rate=rate)
        finally:
            await client.aclose()

    counts = asyncio.run(go())
    console.print(
        f"rolled back: {counts['subscriptions']:,} subscriptions, {counts['customers']:,} customers deleted; {counts['absent']:,} already absent",
        markup=False,
    )
