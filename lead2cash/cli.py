"""The ``lead2cash`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lead2cash.config import ConfigError, json_schema, load_config

app = typer.Typer(help="lead2cash: the lead-to-cash integration hub.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration tools.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, replay, discard.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Source checkpoints: show and set.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(dlq_app, name="dlq")
app.add_typer(checkpoint_app, name="checkpoint")

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
    from lead2cash.hub import Hub

    try:
        return Hub.from_files(paths)
    except ConfigError as exc:
        _fail_config(exc)


@app.command()
def check(paths: ConfigPaths) -> None:
    """Validate config file(s); print every problem with file, line, column and field."""
    try:
        loaded = load_config(paths)
    except ConfigError as exc:
        _fail_config(exc)
        return
    from lead2cash.hub import Hub
    from lead2cash.store import Store

    # Build everything once, offline, on a throwaway store: unknown adapters, actions, tables and plugins
    # are found here, not at the first record.
    try:
        hub = Hub(loaded, store=Store("sqlite:///:memory:"), configure_logs=False)
    except ConfigError as exc:
        _fail_config(exc)
        return
    hub.close()
    cfg = loaded.config
    console.print(f"[green]ok[/green]: {len(cfg.systems)} system(s), {len(cfg.routes)} route(s)")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config (for editors)."""
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


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
    """Run the hub: triggers, delivery loops, until interrupted (or until idle)."""
    hub = _hub(paths)

    async def main() -> int:
        if until_idle:
            try:
                idle = await hub.run_until_idle(timeout=timeout)
            finally:
                await hub.aclose_systems()
            return 0 if idle else 2
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


# ---------------------------------------------------------------------------------------------- dlq
@dlq_app.command("list")
def dlq_list(
    config: ConfigOpt,
    route: Annotated[str | None, typer.Option(help="only this route")] = None,
    status: Annotated[str, typer.Option(help="open | replayed | discarded | all")] = "open",
    limit: int = 100,
) -> None:
    """List dead letters."""
    hub = _hub(config)
    rows = hub.store.dlq_list(route, None if status == "all" else status, limit)
    table = Table("id", "route", "stage", "class", "key", "status", "reason")
    for d in rows:
        table.add_row(
            str(d.id),
            d.route,
            d.stage,
            d.error_class,
            d.idempotency_key or "",
            d.status,
            d.error_message[:120],
        )
    console.print(table)
    hub.close()


@dlq_app.command("show")
def dlq_show(config: ConfigOpt, dead_letter_id: int) -> None:
    """Show one dead letter with its original payload and attempt history."""
    hub = _hub(config)
    d = hub.store.dlq_get(dead_letter_id)
    hub.close()
    if d is None:
        err.print(f"no dead letter {dead_letter_id}")
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(d.__dict__, indent=2, default=str) + "\n")


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOpt,
    ids: Annotated[list[int], typer.Argument(help="dead letter ids")],
    deliver: Annotated[bool, typer.Option(help="deliver now (off: leave it to the running hub)")] = True,
) -> None:
    """Replay dead letters through their route; the effect ledger prevents any duplicate."""
    hub = _hub(config)
    routes: set[str] = set()
    code = 0
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
            else:
                route.submit([json.loads(d.original_payload)])
                hub.store.dlq_mark(dead_letter_id, "replayed")
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            err.print(f"dead letter {dead_letter_id}: {exc}")
            code = 1
            continue
        routes.add(d.route)
        console.print(f"dead letter {dead_letter_id} requeued on route {d.route}")
    if deliver and routes:

        async def drain() -> None:
            try:
                await hub.run_until_idle(timeout=300, routes=sorted(routes))
            finally:
                await hub.aclose_systems()

        asyncio.run(drain())
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
@checkpoint_app.command("show")
def checkpoint_show(config: ConfigOpt, source: Annotated[str | None, typer.Argument()] = None) -> None:
    """Show checkpoints (and the history of one source)."""
    hub = _hub(config)
    table = Table("source", "value")
    for name, value in sorted(hub.store.checkpoints_all().items()):
        if source is None or name == source:
            table.add_row(name, value)
    console.print(table)
    if source:
        history = Table("changed_at_ms", "previous", "value", "reason")
        for h in hub.store.checkpoint_history(source):
            history.add_row(str(h["changed_at_ms"]), str(h["previous"]), h["value"], h["reason"])
        console.print(history)
    hub.close()


@checkpoint_app.command("set")
def checkpoint_set(
    config: ConfigOpt,
    source: str,
    value: str,
    reason: Annotated[str, typer.Option(help="why (kept in the checkpoint history)")],
) -> None:
    """Move a source's checkpoint (to re-read or to skip), with a reason kept in the history."""
    hub = _hub(config)
    known = {r.source_id for r in hub.routes.values() if r.source_id}
    if source not in known:
        err.print(f"unknown source {source!r}; known: {', '.join(sorted(known))}")
        hub.close()
        raise typer.Exit(1)
    hub.store.checkpoint_set(source, value, reason)
    console.print(f"{source} -> {value}")
    hub.close()


# ---------------------------------------------------------------------------------------------- sandbox
@app.command()
def sandbox(
    seed: Annotated[int, typer.Option(help="seed of the generated data")] = 42,
    seed_size: Annotated[int, typer.Option(help="number of opportunities to seed")] = 200,
    faults: Annotated[str, typer.Option(help="fault profile: none, slow, flaky, chaos")] = "none",
    state_dir: Annotated[Path, typer.Option(help="where the CA and state are kept")] = Path(".state/sandbox"),
    host: str = "127.0.0.1",
    salesforce_port: int = 8441,
    lago_port: int = 8442,
    sap_port: int = 8443,
    only: Annotated[str | None, typer.Option(help="comma-separated subset, e.g. salesforce,lago")] = None,
) -> None:
    """Start the Salesforce, Lago and SAP sandboxes over HTTPS on localhost."""
    from lead2cash.sandbox.registry import build_systems
    from lead2cash.sandbox.server import SandboxCluster

    systems = build_systems(
        seed=seed, seed_size=seed_size, faults_profile=faults, only=only.split(",") if only else None
    )
    ports = {"salesforce": salesforce_port, "lago": lago_port, "sap": sap_port}
    cluster = SandboxCluster(systems=systems, state_dir=state_dir, host=host, ports=ports)
    for name, running in cluster.running.items():
        console.print(f"{name:<11} {running.base_url}")
    console.print(f"CA bundle   {cluster.ca_bundle}")
    console.print("hub config (systems:):")
    sys.stdout.write(json.dumps(cluster.hub_config(), indent=2, default=str) + "\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        cluster.run()


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="where the demo writes its files")] = Path(".state/demo"),
    records: int = 500,
) -> None:
    """Run the smallest real route: orders from a JSON Lines inbox through the router to an outbox."""
    from lead2cash.demo import run_minimal_demo

    raise typer.Exit(run_minimal_demo(workdir, records, console))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
