"""The ``lead2cash`` command."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from lead2cash.errors import DeliveryError
from lead2cash.migration.cli import migrate_app
from lead2cash.migration.cutover import cutover_app
from lead2cash.reconcile.cli import reconcile_app

if TYPE_CHECKING:
    from lead2cash.config import ConfigError

# Start-up: the config models, the store (SQLAlchemy, Alembic), the routes and the connectors are imported
# by the commands that use them, so a command such as ``reconcile billing`` pays only for its own modules
# (tests/unit/test_cli_imports.py guards it).

app = typer.Typer(help="lead2cash: the lead-to-cash integration hub.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration tools.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, replay, discard.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Source checkpoints: show and set.", no_args_is_help=True)
route_app = typer.Typer(help="Routes: state, and resuming a halted route.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(dlq_app, name="dlq")
app.add_typer(checkpoint_app, name="checkpoint")
app.add_typer(route_app, name="route")
app.add_typer(migrate_app, name="migrate")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(cutover_app, name="cutover")
summary_app = typer.Typer(help="The billing summary: rebuild and check.", no_args_is_help=True)
app.add_typer(summary_app, name="summary")

console = Console()
err = Console(stderr=True)

ConfigPaths = Annotated[list[Path], typer.Argument(help="config file(s)", exists=False)]
ConfigOpt = Annotated[list[Path], typer.Option("--config", "-c", help="config file(s)")]


def _fail_config(exc: ConfigError) -> None:
    err.print(f"[red]{len(exc.issues)} configuration error(s)[/red]")
    for issue in exc.issues:
        err.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _hub(paths: list[Path]):  # type: ignore[no-untyped-def]
    from lead2cash.config import ConfigError
    from lead2cash.hub import Hub

    try:
        return Hub.from_files(paths)
    except ConfigError as exc:
        _fail_config(exc)


class _Inert:
    """Stands for a source or target of code that ``check`` found but did not import."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def read(self, checkpoint: str | None, limit: int) -> Any:
        raise RuntimeError(f"{self.name}: not imported (lead2cash check)")

    async def deliver(self, entity: Any, key: str) -> Any:
        raise RuntimeError(f"{self.name}: not imported (lead2cash check)")

    async def lookup(self, entity: Any, key: str) -> Any:
        raise RuntimeError(f"{self.name}: not imported (lead2cash check)")


class _InertSystem:
    def __init__(self, name: str, options: Any) -> None:
        self.name = name

    def source(self, object: str, options: Any) -> _Inert:
        return _Inert(f"{self.name}/{object}")

    def target(self, action: str, options: Any) -> _Inert:
        return _Inert(f"{self.name}/{action}")


def _inert_mapping(record: Any) -> Any:
    raise RuntimeError("mapping function not imported (lead2cash check)")


def _without_code(loaded: Any) -> Any:
    """The config with every code reference pointing at inert stand-ins, so the hub is built (adapters,
    tables, filters, keys, every other system) without importing or calling the config's own code."""
    import dataclasses

    from lead2cash.config.sap import SapSystemConfig
    from lead2cash.systems.python.config import PythonSystemConfig

    cfg = loaded.config
    systems = {}
    for name, system in cfg.systems.items():
        if isinstance(system, PythonSystemConfig):
            system = system.model_copy(update={"factory": "lead2cash.cli:_InertSystem"})
        elif isinstance(system, SapSystemConfig) and system.rfc and system.rfc.connection_factory:
            rfc = system.rfc.model_copy(update={"connection_factory": "lead2cash.cli:_InertSystem"})
            system = system.model_copy(update={"rfc": rfc})
        systems[name] = system
    routes = [
        r.model_copy(
            update={"mapping": r.mapping.model_copy(update={"function": "lead2cash.cli:_inert_mapping"})}
        )
        if r.mapping.function
        else r
        for r in cfg.routes
    ]
    return dataclasses.replace(loaded, config=cfg.model_copy(update={"systems": systems, "routes": routes}))


@app.command()
def check(
    paths: ConfigPaths,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            "--metadata",
            help="also check mappings against the reachable systems' metadata "
            "(Salesforce describe, SAP $metadata, Lago plans and add-ons)",
        ),
    ] = False,
    import_code: Annotated[
        bool,
        typer.Option(
            "--import-code",
            help="import the Python code the config names and call python systems' factories, as `run` "
            "does; without it that code is only found and parsed, never run",
        ),
    ] = False,
) -> None:
    """Validate config file(s); print every problem with file, line, column and field."""
    import dataclasses

    from lead2cash.config import ConfigError, load_config

    # One pass: where the schema finds problems, the parts that did validate are still built, so their
    # problems (unknown actions, adapters, key templates) are listed in the same run.
    first: ConfigError | None = None
    try:
        loaded = load_config(paths)
    except ConfigError as exc:
        if exc.partial is None:
            _fail_config(exc)
            return
        first, loaded = exc, exc.partial

    def fail(exc: ConfigError) -> None:
        later = [dataclasses.replace(i, field=loaded.original_field(i.field)) for i in exc.issues]
        if first is None:
            _fail_config(ConfigError(later))
            return
        seen = {str(i) for i in first.issues}
        combined = first.issues + [i for i in later if str(i) not in seen]
        combined.sort(key=lambda i: (i.file, i.line or 0, i.column or 0))
        _fail_config(ConfigError(combined))

    from lead2cash.hub import Hub

    if not import_code:
        from lead2cash.config.code import code_references, locate

        config_dirs = list(dict.fromkeys(f.resolve().parent for f in loaded.files))
        problems = []
        for ref in code_references(loaded.config):
            found = locate(ref, config_dirs)
            if found.problem:
                problems.append(loaded.issue(ref.path, found.problem))
            elif found.note:
                console.print(f"note: {found.note}", markup=False, highlight=False)
        if problems:
            fail(ConfigError(problems))
            return
        loaded = _without_code(loaded)
    from lead2cash.store import Store

    # Build everything once, offline, on a throwaway store: unknown adapters, actions, tables and plugins
    # are found here, not at the first record.
    try:
        hub = Hub(loaded, store=Store("sqlite:///:memory:"), configure_logs=False)
    except ConfigError as exc:
        fail(exc)
        return
    cfg = loaded.config
    if first is not None:
        hub.close()
        fail(ConfigError([]))
        return
    if live:
        from lead2cash.testing.metadata import check_live

        try:
            issues = check_live(hub, console)
        finally:
            hub.close()
        if issues:
            _fail_config(ConfigError(issues))
    else:
        hub.close()
    console.print(f"[green]ok[/green]: {len(cfg.systems)} system(s), {len(cfg.routes)} route(s)")


@app.command("test")
def test_config(
    paths: ConfigPaths,
    tests: Annotated[
        list[Path] | None,
        typer.Option(
            "--tests", "-t", help="test file(s) or folder(s); default: tests/ beside the last config file"
        ),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option(help="run the delivery tests (sandbox: true) on in-process sandboxes")
    ] = True,
    select: Annotated[
        str | None, typer.Option("-k", help="only tests whose name or route contains this")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="hub log level while testing (logs go to stderr)")
    ] = "critical",
) -> None:
    """Run config tests: each gives an input record, the route, and the expected canonical record, key,
    target payload or outcome (delivered once, dead-lettered), optionally under sandbox faults."""
    from lead2cash.config import ConfigError, load_config
    from lead2cash.observability import configure_logging
    from lead2cash.testing import ConfigTestRunner

    try:
        loaded = load_config(paths)
    except ConfigError as exc:
        _fail_config(exc)
        return
    configure_logging(log_level, "console")
    found = tests or ([paths[-1].parent / "tests"] if paths else [])
    try:
        summary = ConfigTestRunner(loaded, console, sandbox=sandbox, select=select).run(found)
    except ConfigError as exc:
        _fail_config(exc)
        return
    raise typer.Exit(0 if summary.ok else 1)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config (for editors)."""
    from lead2cash.config import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@config_app.command("docs")
def config_docs(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of printing")
    ] = None,
) -> None:
    """Print the configuration reference (Markdown), generated from the schema: docs/configuration.md."""
    from lead2cash.config.reference import render

    text = render()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


@app.command()
def run(
    paths: ConfigPaths,
    until_idle: Annotated[
        bool, typer.Option(help="ingest and deliver until nothing is pending, then exit")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="with --until-idle: give up after this many seconds")
    ] = None,
) -> None:
    """Run the hub: triggers, delivery loops, until interrupted (or until idle).

    With --until-idle it prints what it did per route and exits 0 when idle, 2 when --timeout passed
    first, 3 when a halted route still has messages pending, 4 when a source could not be read."""
    import asyncio

    hub = _hub(paths)

    async def main() -> int:
        if until_idle:
            hub.role = "batch"  # not a hub that stays: operator commands do not leave delivery to it
            before = _route_counts(hub)
            try:
                idle = await hub.run_until_idle(timeout=timeout)
                try:
                    code = _until_idle_report(hub, before, idle)
                except Exception as exc:
                    if not _store_unavailable(exc):
                        raise
                    # run_until_idle waited the outage out until --timeout: no counts to report.
                    err.print(f"the store is unavailable ({type(exc).__name__}); not idle", markup=False)
                    return 2
                await _report_lagging(hub)
            finally:
                await hub.aclose_systems()
            return code
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, hub._stopping.set)
        await hub.serve_forever()
        return 0

    try:
        code = asyncio.run(main())
    finally:
        hub.close()
    raise typer.Exit(code)


def _store_unavailable(exc: BaseException) -> bool:
    from lead2cash.store.store import is_unavailable

    return is_unavailable(exc)


def _route_counts(hub: Any) -> dict[str, int] | None:
    """Per route: messages in the inbox (None while the store is unavailable: the run waits that out)."""
    try:
        return {name: hub.store.count_messages(name) for name in hub.routes}
    except Exception as exc:
        if not _store_unavailable(exc):
            raise
        return None


def _until_idle_report(hub: Any, before: dict[str, int] | None, idle: bool) -> int:
    """One line per route (read, new, delivered, dead-lettered, pending), then the verdict; the exit code."""
    after = {name: hub.store.count_messages(name) for name in hub.routes}
    sample = hub.metrics.registry.get_sample_value
    halted_with_work = []
    for name, route in hub.routes.items():
        read = sample("lead2cash_ingested_total", {"route": name}) or 0
        delivered = sample("lead2cash_delivered_total", {"route": name}) or 0
        dead = sum(
            sample("lead2cash_dead_letters_total", {"route": name, "stage": stage}) or 0
            for stage in ("mapping", "delivery")
        )
        pending = hub.store.count_messages(name, "pending")
        new = (
            f"{after[name] - before[name]} new" if before is not None else "new: unknown, the store was down"
        )
        line = (
            f"{name}: read {int(read)} ({new}), delivered {int(delivered)}, "
            f"dead-lettered {int(dead)}, pending {pending}"
        )
        if route.halted:
            line += f", HALTED: {route.halted}"
            if pending:
                halted_with_work.append(name)
        unread = hub.read_errors.get(name)
        if unread:
            line += f", SOURCE NOT READ: {unread}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if halted_with_work:
        err.print(
            f"halted with messages pending: {', '.join(halted_with_work)}; fix the cause, then "
            "`lead2cash route resume -c ... ROUTE`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 3
    if not idle:
        err.print("timed out before the routes were idle", markup=False)
        return 2
    if hub.read_errors:
        err.print(
            f"source(s) not read: {', '.join(hub.read_errors)} (the checkpoints are kept; see above)",
            markup=False,
            soft_wrap=True,
        )
        return 4
    console.print("idle", markup=False)
    return 0


async def _report_lagging(hub: Any) -> None:
    """Say what the sources' safety lag held back: a run right after a change otherwise looks like a no-op."""
    for route in hub.routes.values():
        behind = getattr(route.source, "behind", None)
        if behind is None or route.source_id is None or route.name in hub.read_errors:
            continue
        try:
            count = await behind(hub.store.checkpoint_get(route.source_id))
        except Exception as exc:  # a report only: never fail the run for it
            err.print(f"{route.name}: could not count the records still ahead ({exc})", markup=False)
            continue
        if count:
            lag = getattr(route.source, "safety_lag", 0.0)
            console.print(
                f"{route.name}: {count} record(s) newer than the safety lag ({lag:g} s) were left for the "
                "next run",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


# ---------------------------------------------------------------------------------------------- dlq
@dlq_app.command("list")
def dlq_list(
    config: ConfigOpt,
    route: Annotated[str | None, typer.Option(help="only this route")] = None,
    status: Annotated[str, typer.Option(help="open | replayed | discarded | all")] = "open",
    limit: int = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per dead letter (metadata, no payloads)")
    ] = False,
) -> None:
    """List dead letters. Ids and keys are printed whole (wrapped, never cut); --json for scripts."""
    from lead2cash.web.app import dead_letter_summary

    hub = _hub(config)
    rows = hub.store.dlq_list(route, status, limit)
    hub.close()
    if as_json:
        for d in rows:
            sys.stdout.write(json.dumps(dead_letter_summary(d)) + "\n")
        return
    # The values one copies (into dlq show / replay, or a search) are never cut with an ellipsis, only
    # wrapped: ids keep their width, keys fold.
    table = Table(
        Column("id", no_wrap=True, min_width=max((len(str(d.id)) for d in rows), default=2)),
        Column("route", overflow="fold"),
        "stage",
        "class",
        "status",
        Column("key", overflow="fold"),
        Column("reason", overflow="fold"),
    )
    for d in rows:
        table.add_row(
            str(d.id),
            d.route,
            d.stage,
            d.error_class,
            d.status,
            d.idempotency_key or "",
            d.error_message[:120],
        )
    console.print(table)


def _json_pretty(value: Any, level: int = 0) -> str:
    """Indented JSON that writes Decimals as they are: payload amounts stay exact, digit for digit."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_json_pretty(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value:
        return "[\n" + ",\n".join(f"{inner}{_json_pretty(v, level + 1)}" for v in value) + f"\n{pad}]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, default=str)


@dlq_app.command("show")
def dlq_show(config: ConfigOpt, dead_letter_id: int) -> None:
    """Show one dead letter with its original payload and attempt history (payloads as JSON, exact)."""
    hub = _hub(config)
    d = hub.store.dlq_get(dead_letter_id)
    hub.close()
    if d is None:
        err.print(f"no dead letter {dead_letter_id}")
        raise typer.Exit(1)
    record = dict(d.__dict__)
    for name in ("original_payload", "canonical_payload"):
        text = record[name]
        if text is not None:
            # A reject the source could not parse stays the text it was.
            with contextlib.suppress(ValueError):
                record[name] = json.loads(text, parse_float=Decimal)
    sys.stdout.write(_json_pretty(record) + "\n")


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOpt,
    ids: Annotated[list[int], typer.Argument(help="dead letter ids")],
    deliver: Annotated[bool, typer.Option(help="deliver now (off: leave it to the running hub)")] = True,
    stored_payload: Annotated[
        bool,
        typer.Option(
            "--stored-payload",
            help="mapping dead letters: submit the stored payload instead of re-reading the record from "
            "its source",
        ),
    ] = False,
) -> None:
    """Replay dead letters through their route; the effect ledger prevents any duplicate. A mapping dead
    letter's record is read again from its source (corrected there, it maps now)."""
    import asyncio

    hub = _hub(config)
    routes: set[str] = set()
    code = 0

    async def main() -> None:
        nonlocal code, deliver
        try:
            for dead_letter_id in ids:
                d = hub.store.dlq_get(dead_letter_id)
                if d is None:
                    err.print(f"no dead letter {dead_letter_id}")
                    code = 1
                    continue
                route = hub.routes.get(d.route)
                if route is None:
                    err.print(f"dead letter {dead_letter_id}: route {d.route!r} is not in this config")
                    code = 1
                    continue
                try:
                    if d.stage == "delivery":
                        hub.store.dlq_requeue(dead_letter_id)
                        console.print(f"dead letter {dead_letter_id} requeued on route {d.route}")
                    else:
                        done = await route.replay_mapping(d, stored_payload=stored_payload)
                        text = f"dead letter {dead_letter_id} ({d.route}): {done.read}: "
                        if done.outcome == "gone":
                            err.print(text + str(done.reason))
                            code = 1
                            continue
                        if done.outcome == "dead":
                            err.print(text + f"fails mapping again, new dead letter: {done.reason}")
                            code = 1
                        else:
                            said = {
                                "queued": "queued",
                                "duplicate": "already in the inbox (read by a poll since): nothing new",
                                "filtered": "the route's filter drops it",
                            }
                            console.print(text + said[done.outcome])
                except (ValueError, KeyError, DeliveryError) as exc:
                    from lead2cash.routes.route import describe_error

                    # The source's own error (unreachable, throttled): redacted like a dead-letter reason.
                    err.print(f"dead letter {dead_letter_id}: {describe_error(exc)}")
                    code = 1
                    continue
                routes.add(d.route)
            running = hub.running_hub() if deliver and routes else None
            if running is not None:
                # Its deliveries are in flight: delivering here too would take over work it owns. Its
                # delivery loops find the requeued messages within a second.
                console.print(
                    f"a hub is running on this store (worker {running.worker_id}, pid {running.pid} on "
                    f"{running.host}): it delivers the replayed messages"
                )
                deliver = False
            if deliver and routes:
                hub.as_operator()
                # The routes reading the replayed ones' confirmations have work when those are delivered.
                await hub.run_until_idle(timeout=300, routes=hub.with_derived(sorted(routes)))
        finally:
            await hub.aclose_systems()

    asyncio.run(main())
    if deliver and routes:
        console.print(f"open dead letters now: {hub.store.dlq_count()}")
    hub.close()
    raise typer.Exit(code)


@dlq_app.command("discard")
def dlq_discard(config: ConfigOpt, ids: Annotated[list[int], typer.Argument(help="dead letter ids")]) -> None:
    """Discard dead letters (kept in the table, marked discarded)."""
    hub = _hub(config)
    code = 0
    for dead_letter_id in ids:
        try:
            hub.store.dlq_mark(dead_letter_id, "discarded")
            console.print(f"dead letter {dead_letter_id} discarded")
        except (KeyError, ValueError) as exc:
            err.print(str(exc))
            code = 1
    hub.close()
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------- checkpoints
def _sources(hub: Any) -> dict[str, Any]:
    """Checkpointed sources of the config, by checkpoint name."""
    return {r.source_id: r.source for r in hub.routes.values() if r.source_id}


def _unknown_source(hub: Any, source: str) -> None:
    known = sorted(set(_sources(hub)) | set(hub.store.checkpoints_all()))
    err.print(f"unknown source {source!r}; known: {', '.join(known)}", markup=False, soft_wrap=True)
    hub.close()
    raise typer.Exit(1)


@checkpoint_app.command("show")
def checkpoint_show(
    config: ConfigOpt,
    source: Annotated[str | None, typer.Argument()] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON: {source: value}, or one source with its history")
    ] = False,
) -> None:
    """Show checkpoints (and the history of one source). Names and values are printed whole."""
    hub = _hub(config)
    stored = hub.store.checkpoints_all()
    if source is not None and source not in stored and source not in _sources(hub):
        _unknown_source(hub, source)
    values = {n: v for n, v in sorted(stored.items()) if source is None or n == source}
    history = hub.store.checkpoint_history(source) if source else []
    hub.close()
    if as_json:
        out: dict[str, Any] = dict(values)
        if source is not None:
            out = {"source": source, "value": values.get(source), "history": history}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    table = Table(Column("source", overflow="fold"), Column("value", overflow="fold"))
    for name, value in values.items():
        table.add_row(name, value)
    if source is not None and source not in values:
        table.add_row(source, "(none yet: the first read starts at the beginning)")
    console.print(table)
    if source:
        changes = Table(
            "changed_at_ms",
            Column("previous", overflow="fold"),
            Column("value", overflow="fold"),
            Column("reason", overflow="fold"),
        )
        for h in history:
            changes.add_row(str(h["changed_at_ms"]), str(h["previous"]), h["value"], h["reason"])
        console.print(changes)


@checkpoint_app.command("set")
def checkpoint_set(
    config: ConfigOpt,
    source: str,
    value: str,
    reason: Annotated[str, typer.Option(help="why (kept in the checkpoint history)")],
) -> None:
    """Move a source's checkpoint (to re-read or to skip), with a reason kept in the history. The value
    is checked against the source's format (a Salesforce cursor, a Lago date-time, an offset)."""
    hub = _hub(config)
    sources = _sources(hub)
    if source not in sources:
        _unknown_source(hub, source)
    parse = getattr(sources[source], "parse_checkpoint", None)
    if parse is not None:
        try:
            value = parse(value)
        except ValueError as exc:
            err.print(f"{source}: {exc}", markup=False, highlight=False, soft_wrap=True)
            hub.close()
            raise typer.Exit(1) from None
    hub.store.checkpoint_set(source, value, reason)
    console.print(f"{source} -> {value}", markup=False, highlight=False, soft_wrap=True)
    hub.close()


def _when(text: str) -> Any:
    """``now`` (None), or a date / ISO 8601 date-time (a date is its midnight UTC)."""
    import datetime as dt

    if text == "now":
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: expected now, a date (2026-12-01) or a date-time (2026-12-01T09:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@checkpoint_app.command("start")
def checkpoint_start(
    config: ConfigOpt,
    source: str,
    at: Annotated[
        str,
        typer.Option(help="now (the source system's clock) or a date / ISO 8601 date-time, UTC by default"),
    ] = "now",
    reason: Annotated[str, typer.Option(help="why (kept in the checkpoint history)")] = "first sync",
    force: Annotated[bool, typer.Option(help="also when the source has a checkpoint already")] = False,
) -> None:
    """Start a source at a point in time, before its first run, so that run does not bill history: only
    records changed from then on are read (Salesforce: SystemModstamp; the reconciliation sweep too)."""
    import asyncio

    hub = _hub(config)
    sources = _sources(hub)
    if source not in sources:
        _unknown_source(hub, source)
    starter = getattr(sources[source], "checkpoint_at", None)
    if starter is None:
        err.print(f"{source}: this source cannot start at a time; use `checkpoint set`", markup=False)
        hub.close()
        raise typer.Exit(1)
    previous = hub.store.checkpoint_get(source)
    if previous is not None and not force:
        err.print(
            f"{source} has a checkpoint already ({previous}); moving it skips records: --force to do so",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        hub.close()
        raise typer.Exit(1)

    try:
        when = _when(at)
    except typer.BadParameter:
        hub.close()
        raise

    async def start() -> str:
        try:
            value: str = await starter(when)
            return value
        finally:
            await hub.aclose_systems()

    try:
        value = asyncio.run(start())
    except Exception as exc:
        err.print(f"{source}: cannot start the checkpoint: {exc}", markup=False, soft_wrap=True)
        hub.close()
        raise typer.Exit(1) from None
    hub.store.checkpoint_set(source, value, reason)
    console.print(f"{source} -> {value}", markup=False, highlight=False, soft_wrap=True)
    hub.close()


# ---------------------------------------------------------------------------------------------- routes
@route_app.command("list")
def route_list(config: ConfigOpt) -> None:
    """Routes with their state, pending messages and open dead letters."""
    hub = _hub(config)
    table = Table("route", "state", "reason", "pending", "delivered", "dead letters")
    for name in hub.routes:
        state = hub.store.route_state_get(name)
        table.add_row(
            name,
            state.status if state else "running",
            (state.reason or "")[:80] if state else "",
            str(hub.store.count_messages(name, "pending")),
            str(hub.store.count_messages(name, "delivered")),
            str(hub.store.dlq_count(name)),
        )
    console.print(table)
    hub.close()


@route_app.command("resume")
def route_resume(config: ConfigOpt, name: str) -> None:
    """Resume a halted (or paused) route; a running hub notices within seconds."""
    hub = _hub(config)
    if name not in hub.routes:
        err.print(f"unknown route {name!r}; known: {', '.join(hub.routes)}")
        hub.close()
        raise typer.Exit(1)
    hub.routes[name].resume()
    console.print(f"{name}: running")
    hub.close()


# ---------------------------------------------------------------------------------------------- summary
@summary_app.command("rebuild")
def summary_rebuild(
    config: ConfigOpt,
    check: Annotated[
        bool, typer.Option("--check", help="compare with the incremental summaries; exit 1 on a difference")
    ] = False,
    customer: Annotated[list[str] | None, typer.Option("--customer", help="only these customers")] = None,
) -> None:
    """Recompute every billing summary from Lago (invoices, subscriptions, current usage). With --check,
    first apply what the hub confirmed and the summary has not taken yet, then compare and list the
    customers whose incremental summary differs."""
    import asyncio
    import json
    import time

    from lead2cash.routes.route import describe_error
    from lead2cash.summary.rebuild import compare, recompute_all

    hub = _hub(config)
    if hub.summary is None:
        err.print("no billing_summary in the config")
        hub.close()
        raise typer.Exit(2)

    async def work() -> tuple[Any, float]:
        if check:
            await hub.summary.step()
        started = time.perf_counter()
        batch = await recompute_all(hub.summary.catalog.client, customer or None)
        return batch, time.perf_counter() - started

    try:
        batch, took = asyncio.run(work())
    except DeliveryError as exc:
        err.print(f"cannot recompute the summaries: {describe_error(exc)}", markup=False, highlight=False)
        hub.close()
        raise typer.Exit(2) from None
    finally:
        asyncio.run(hub.aclose_systems())
    if not check:
        for s in batch:
            console.print(
                json.dumps(s.public(), sort_keys=True), markup=False, highlight=False, soft_wrap=True
            )
        hub.close()
        return
    mine = [s for s, _, _ in hub.summary.state.summaries()]
    if customer:
        mine = [s for s in mine if s.customer in customer]
    diff = compare(mine, batch)
    hub.close()
    customers = sorted({c for c, _ in diff})
    console.print(
        f"{len(batch)} summaries recomputed from Lago in {took:.2f} s; {len(customers)} customer(s) differ",
        markup=False,
        highlight=False,
    )
    for (who, currency), fields in diff.items():
        console.print(f"  {who} {currency}: {fields}", markup=False, highlight=False, soft_wrap=True)
    if diff:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------- sandbox
@app.command()
def sandbox(
    seed: Annotated[int, typer.Option(help="seed of the generated data")] = 42,
    seed_size: Annotated[int, typer.Option(help="number of opportunities to seed")] = 200,
    faults: Annotated[str, typer.Option(help="fault profile: none, slow, flaky, chaos")] = "none",
    state_dir: Annotated[Path, typer.Option(help="where the CA and state are kept")] = Path(".state/sandbox"),
    host: str = "127.0.0.1",
    salesforce_port: Annotated[int, typer.Option(envvar="LEAD2CASH_SANDBOX_SALESFORCE_PORT")] = 8441,
    lago_port: Annotated[int, typer.Option(envvar="LEAD2CASH_SANDBOX_LAGO_PORT")] = 8442,
    sap_port: Annotated[int, typer.Option(envvar="LEAD2CASH_SANDBOX_SAP_PORT")] = 8443,
    only: Annotated[str | None, typer.Option(help="comma-separated subset, e.g. salesforce,lago")] = None,
    lead_to_cash: Annotated[
        bool,
        typer.Option(
            "--lead-to-cash/--history",
            help="--lead-to-cash (the default), as `make demo` runs them: --seed-size open deals in the "
            "billing engine's currencies, Lago and SAP empty, the billing clock at today, for the shipped "
            "routes. --history: Lago and SAP seeded with customers, invoices and postings of their own, "
            "deals in currencies Lago refuses (to explore the APIs; the shipped routes dead-letter some)",
        ),
    ] = True,
    write_systems: Annotated[
        Path | None,
        typer.Option(
            help="write the hub's systems file for these sandboxes there (YAML, as `make demo` writes it: "
            "the four systems the shipped routes name, a fresh SQLite state in --state-dir, the web app "
            "on --hub-port)"
        ),
    ] = None,
    hub_port: Annotated[
        int, typer.Option(envvar="LEAD2CASH_SANDBOX_HUB_PORT", help="the hub's web port in --write-systems")
    ] = 8440,
) -> None:
    """Start the Salesforce, Lago and SAP sandboxes over HTTPS on localhost (Ctrl-C stops them)."""
    from lead2cash.sandbox.faults import PROFILES
    from lead2cash.sandbox.registry import build_systems
    from lead2cash.sandbox.server import SandboxCluster

    if faults not in PROFILES:
        err.print(f"unknown fault profile {faults!r}; known: {', '.join(PROFILES)}", markup=False)
        raise typer.Exit(2)

    if lead_to_cash:
        from lead2cash.demo.environment import demo_sandboxes

        systems: list[Any] = list(demo_sandboxes(seed, seed_size))
        for system in systems:
            system.faults.set_profile(faults)
        if only:
            systems = [s for s in systems if s.name in only.split(",")]
    else:
        from lead2cash.systems.registry import sandboxes

        systems = build_systems(
            seed=seed,
            seed_size=seed_size,
            faults_profile=faults,
            only=only.split(",") if only else None,
            factories=sandboxes(),
        )
    ports = {"salesforce": salesforce_port, "lago": lago_port, "sap": sap_port}
    cluster = SandboxCluster(systems=systems, state_dir=state_dir, host=host, ports=ports)
    for name, running in cluster.running.items():
        console.print(f"{name:<11} {running.base_url}")
    console.print(f"CA bundle   {cluster.ca_bundle.resolve()}", highlight=False, soft_wrap=True)
    if write_systems is not None:
        _write_sandbox_systems(write_systems, cluster, state_dir, hub_port)
    console.print("hub config (systems:):")
    sys.stdout.write(json.dumps(cluster.hub_config(), indent=2, default=str) + "\n")
    sys.stdout.flush()
    # The servers run in a thread and this one waits for Ctrl-C or SIGTERM: uvicorn, when it serves in
    # the main thread, re-raises the signal it caught after shutting down, as a KeyboardInterrupt traceback.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster.start_in_thread()
        while not stop.wait(0.5):
            pass
    finally:
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    err.print("sandboxes stopped", markup=False)


def _write_sandbox_systems(path: Path, cluster: Any, state_dir: Path, hub_port: int) -> None:
    """The systems file ``make demo`` writes, for these sandboxes. The sandboxes start from their seed on
    every start, so the hub's state starts fresh with them: a cursor or cross-references left from an
    earlier run would point at records these sandboxes never had."""
    from ruamel.yaml import YAML

    from lead2cash.demo.environment import hub_systems_config

    if {"salesforce", "lago", "sap"} - set(cluster.running):
        err.print("--write-systems needs all three sandboxes (the shipped routes use them all)")
        raise typer.Exit(1)
    store = (state_dir / "hub.db").resolve()
    for stale in (store, store.with_name("hub.db-wal"), store.with_name("hub.db-shm")):
        stale.unlink(missing_ok=True)
    config = hub_systems_config(
        cluster.hub_config(), store_url=f"sqlite:///{store}", web_port=hub_port, worker_id="sandbox-hub"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    with path.open("w", encoding="utf-8") as out:
        out.write(
            "# Written by `lead2cash sandbox --write-systems`: the hub's systems for these sandboxes.\n"
        )
        yaml.dump(json.loads(json.dumps(config, default=str)), out)
    console.print(
        f"systems     {path}  (hub state {store}, web app on port {hub_port})",
        highlight=False,
        soft_wrap=True,
    )


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    workdir: Annotated[
        Path,
        typer.Option(
            help="where the demo keeps its state (SQLite store, the systems file it writes, the sandboxes' "
            "CA); emptied at start"
        ),
    ] = Path(".state/demo"),
    deals: Annotated[int, typer.Option(help="deals to close as won in Salesforce")] = 25,
    seed: Annotated[int, typer.Option(help="seed of the sandboxes' data")] = 42,
    advance_days: Annotated[
        int,
        typer.Option(
            help="days the billing clock moves on after the deals are billed: subscription periods that "
            "end within them are invoiced, posted and written back (0: one-off invoices only)"
        ),
    ] = 35,
    faults: Annotated[
        str,
        typer.Option(
            help="none | flaky (20% errors and 5% lost responses on every call to every system, to see "
            "retries and lookups at work)"
        ),
    ] = "none",
    keep_running: Annotated[
        bool,
        typer.Option(
            help="leave the hub and the sandboxes up afterwards, printing their URLs, the CA bundle, the "
            "admin token and an admin request to try; Ctrl-C stops them"
        ),
    ] = False,
    minimal: Annotated[
        bool,
        typer.Option(
            help="the smallest route instead: JSON Lines in, JSON Lines out, no sandboxes (with "
            "--records); --deals, --advance-days, --faults and --keep-running do not apply"
        ),
    ] = False,
    records: Annotated[int, typer.Option(help="with --minimal: orders to route")] = 500,
    migration: Annotated[
        bool,
        typer.Option(
            help="the legacy billing migration instead: gates, load into a Lago sandbox, parallel run, "
            "cutover, rollback, cutover again, checked record by record (with --customers); --deals, "
            "--advance-days, --faults and --keep-running do not apply"
        ),
    ] = False,
    customers: Annotated[
        int,
        typer.Option(
            min=200,
            help="with --migration: legacy accounts to migrate (at least 200: a smaller extract's defect rates "
            "cross the quality gates' thresholds by chance, even after cleansing)",
        ),
    ] = 300,
) -> None:
    """Lead to cash on the sandboxes: deals won in Salesforce, billed in Lago, posted in SAP, written back;
    ends with the three systems reconciled. Exit 0 when they agree (see docs/operating.md, "The demo")."""
    if minimal:
        from lead2cash.demo import run_minimal_demo

        raise typer.Exit(run_minimal_demo(workdir, records, console))
    if migration:
        from lead2cash.demo.migration import run_migration_demo

        raise typer.Exit(run_migration_demo(workdir, console, customers=customers))
    from lead2cash.demo.lead_to_cash import FAULT_PROFILES, run_lead_to_cash_demo

    if faults not in FAULT_PROFILES:
        err.print(f"unknown fault profile {faults!r}; known: {', '.join(FAULT_PROFILES)}", markup=False)
        raise typer.Exit(2)
    raise typer.Exit(
        run_lead_to_cash_demo(
            workdir,
            console,
            deals=deals,
            seed=seed,
            advance_days=advance_days,
            faults=faults,
            keep_running=keep_running,
        )
    )


def main() -> None:
    app()


def entry() -> None:
    """The ``lead2cash`` executable: ``main``; after a command that allows it (``lead2cash.fast_exit``), the
    exit handlers, the standard streams flushed and the end of the process without the module teardown."""
    from lead2cash import fast_exit

    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if not fast_exit.allowed():
        sys.exit(code)  # type: ignore[arg-type]
    import atexit
    import os

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # as sys.exit does with a message
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away (`| head`) is not a failure here
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
