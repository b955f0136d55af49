"""The Hub: the composition root. It builds the store, the systems, the routes and the router from
config, and is the only place where connectors, adapters and routes meet."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from lead2cash.canonical_model import ENTITY_TYPES
from lead2cash.config import ConfigError, ConfigIssue, LoadedConfig, load_config
from lead2cash.config.errors import ConfigProblems
from lead2cash.config.schema import RouteConfig
from lead2cash.errors import DeliveryError, ErrorClass
from lead2cash.observability import REDACTOR, Metrics, configure_logging
from lead2cash.routes.interfaces import Source, Target
from lead2cash.routes.mapping import KeyTemplate, build_filter, build_mapper, unknown_fields
from lead2cash.routes.policy import OnFailure, RetryPolicy
from lead2cash.routes.route import RouteRuntime
from lead2cash.store import Instance, Store, is_unavailable
from lead2cash.systems import BindingContext, SystemBinding, builder, import_dotted
from lead2cash.systems.hub.binding import ConfirmationsSource
from lead2cash.systems.registry import check_options, inbound_adapters, system_type

log = structlog.get_logger("lead2cash.hub")

# A delivering process writes its heartbeat row this often (more often while the store is unavailable: the
# write is also the probe that tells the store is back), and counts as gone when it is this old.
HEARTBEAT_S = 2.0
HEARTBEAT_DOWN_S = 0.5
INSTANCE_TTL_S = 30.0
STORE_WAIT_S = (0.25, 2.0)  # a delivery loop's first and longest wait while the store is unavailable
# The store counts as back after a heartbeat written with no store error for this long: a full SQLite disk
# may take the heartbeat's update in place and still refuse every insert.
STORE_QUIET_S = 3.0
# An idle delivery loop whose store says work is due yet claims none (ordering keys held by a message in
# flight at another worker) backs off from the first to the longest wait instead of asking again at once.
IDLE_BACKOFF_S = (0.01, 0.5)


_HEAP_FROZEN = False


def _freeze_heap() -> None:
    """Once per process, as the first hub starts: collect, then move every object alive (modules,
    pydantic schemas, config, the systems) to the collector's permanent generation. They live as long
    as the process, yet each full collection walked them all: under load that was 1.5 ms of CPU per
    deal (``bench/lead_to_cash.py``), ten times what the collections cost once they were frozen."""
    global _HEAP_FROZEN
    if not _HEAP_FROZEN:
        _HEAP_FROZEN = True
        gc.collect()
        gc.freeze()


# ---------------------------------------------------------------------------------------------- hub
class Hub:
    def __init__(
        self, loaded: LoadedConfig, *, store: Store | None = None, configure_logs: bool = True
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        base_dir = loaded.files[0].parent if loaded.files else Path.cwd()
        self._config_dirs = list(dict.fromkeys(f.resolve().parent for f in loaded.files))
        REDACTOR.add(loaded.secrets)
        if configure_logs:
            configure_logging(self.config.logging.level, self.config.logging.format)
        self.worker_id = self.config.state.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        # Claims are made as ``lease_owner``: the worker id for a hub; operator commands that deliver use
        # one of their own (``as_operator``), so nobody mistakes their leases for the hub's.
        self.lease_owner = self.worker_id
        self.role = "hub"
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._store_down_since: float | None = None
        self._store_failed_at = 0.0
        self._store_error: str | None = None
        self.metrics = Metrics()
        self.systems: dict[str, SystemBinding] = {}
        self.routes: dict[str, RouteRuntime] = {}
        self.route_configs: dict[str, RouteConfig] = {}
        issues: list[ConfigIssue] = []
        created = self._new_sqlite_files(self._state_url(base_dir)) if store is None else []
        self.store = store or Store(self._state_url(base_dir))
        self.context = BindingContext(
            self.store, self.config.mappings, base_dir, self.metrics, config_dirs=self._config_dirs
        )
        for name, sys_cfg in self.config.systems.items():
            try:
                self.systems[name] = self._build_system(name, sys_cfg)
            except ConfigProblems as exc:
                issues.extend(loaded.issue(("systems", name, *p), m) for p, m in exc.problems)
            except Exception as exc:
                issues.append(loaded.issue(("systems", name), f"cannot build system: {exc}"))
        broken = {name for name in self.config.systems if name not in self.systems}
        for i, route_cfg in enumerate(self.config.routes):
            if not route_cfg.enabled:
                continue
            # A route over a system that did not build is not built (its error is reported above); the
            # other routes are, so one run of `check` lists every problem.
            if {route_cfg.source.system, route_cfg.target.system} & broken:
                continue
            try:
                self.routes[route_cfg.name] = self._build_route(route_cfg)
                self.route_configs[route_cfg.name] = route_cfg
            except ConfigProblems as exc:
                issues.extend(loaded.issue(("routes", i, *p), m) for p, m in exc.problems)
        if issues:
            self._abandon(created, owned=store is None)
            raise ConfigError(issues)
        self._stopping = asyncio.Event()
        self._wake: dict[str, asyncio.Event] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._web: Any = None
        self._source_paused: dict[str, float] = {}
        self._polls: dict[str, asyncio.Task[int]] = {}
        self._ticks: dict[str, asyncio.Task[None]] = {}
        for route in self.routes.values():
            route.on_store_error = self.store_failed
        self.summary: Any = None
        self.summary_sink: Any = None
        if self.config.billing_summary is not None:
            try:
                self._build_summary()
            except ConfigError:
                self._abandon(created, owned=store is None)
                raise
        self.read_errors: dict[str, str] = {}  # route -> why its source's last read failed

    @staticmethod
    def _new_sqlite_files(url: str) -> list[Path]:
        """The SQLite files opening ``url`` would create (none if the database exists already)."""
        if not url.startswith("sqlite:///") or url.endswith(":memory:"):
            return []
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if path.exists():
            return []
        return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]

    def _abandon(self, created: list[Path], owned: bool) -> None:
        """A config that cannot be built leaves nothing behind: not even a fresh, empty state file."""
        for system in self.systems.values():
            closer = getattr(system, "close", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()
        if owned:
            self.store.close()
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    @classmethod
    def from_files(cls, paths: str | Path | Sequence[str | Path], **kwargs: Any) -> Hub:
        return cls(load_config(paths), **kwargs)

    def _state_url(self, base_dir: Path) -> str:
        url = self.config.state.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            relative = url.removeprefix("sqlite:///")
            if relative != ":memory:":
                return f"sqlite:///{(base_dir / relative).resolve()}"
        return url

    def _build_system(self, name: str, cfg: Any) -> SystemBinding:
        built: SystemBinding = builder(cfg.type)(name, cfg, self.context)
        return built

    def _options(
        self, system: str, kind: str, name: str, options: Mapping[str, Any]
    ) -> Mapping[str, Any] | list[tuple[tuple[str | int, ...], str]]:
        """A source's or target's options validated by the model its system type declares for the object
        or action (the problems if they do not fit); only what the route sets, so the binding falls back
        to the system's settings for the rest."""
        sys_cfg = self.config.systems.get(system)
        if sys_cfg is None:
            return options  # the loader reports a route naming an unknown system
        spec = system_type(sys_cfg.type)
        problems = check_options(spec, kind, name, options)
        if problems:
            return problems
        operation = spec.source(name) if kind == "object" else spec.action(name)
        assert operation is not None
        dumped: Mapping[str, Any] = operation.options.model_validate(dict(options)).model_dump(
            exclude_unset=True
        )
        return dumped

    def _build_route(self, cfg: RouteConfig) -> RouteRuntime:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        entity_type = ENTITY_TYPES.get(cfg.mapping.entity)
        if entity_type is None:
            problems.append(
                (("mapping", "entity"), f"unknown canonical entity; known: {', '.join(sorted(ENTITY_TYPES))}")
            )
        adapter_fn: Any = None
        if cfg.mapping.adapter is not None:
            adapters = inbound_adapters()
            inbound = adapters.get(cfg.mapping.adapter)
            if inbound is None:
                problems.append(
                    (("mapping", "adapter"), f"unknown adapter; known: {', '.join(sorted(adapters))}")
                )
            else:
                opts = dict(cfg.mapping.options)
                # An option ending in "_table" names a table under mappings: the adapter gets the table.
                for option, value in cfg.mapping.options.items():
                    if option.endswith("_table") and isinstance(value, str):
                        if value in self.config.mappings:
                            opts[option] = self.config.mappings[value]
                        else:
                            known = ", ".join(sorted(self.config.mappings)) or "none"
                            problems.append(
                                (
                                    ("mapping", "options", option),
                                    f"no table {value!r} under mappings (known: {known})",
                                )
                            )

                def adapter_fn(record: Mapping[str, Any], _f: Any = inbound, _o: Any = opts) -> Any:
                    return _f(record, _o)

        elif cfg.mapping.function is not None:
            try:
                adapter_fn = import_dotted(cfg.mapping.function, self._config_dirs)
            except (ImportError, AttributeError) as exc:
                problems.append((("mapping", "function"), f"cannot import: {exc}"))
        source: Source | None = None
        target: Target | None = None
        source_options = self._options(cfg.source.system, "object", cfg.source.object, cfg.source.options)
        if isinstance(source_options, list):
            problems.extend((("source", *p), m) for p, m in source_options)
        else:
            try:
                source = self.systems[cfg.source.system].source(cfg.source.object, source_options)
            except Exception as exc:
                problems.append((("source",), str(exc)))
        target_options = self._options(cfg.target.system, "action", cfg.target.action, cfg.target.options)
        if isinstance(target_options, list):
            problems.extend((("target", *p), m) for p, m in target_options)
        else:
            try:
                target = self.systems[cfg.target.system].target(cfg.target.action, target_options)
            except Exception as exc:
                problems.append((("target",), str(exc)))
        if entity_type is not None:
            for key_name in ("idempotency_key", "ordering_key"):
                template = getattr(cfg, key_name)
                for path in unknown_fields(template, entity_type) if template else []:
                    problems.append(((key_name,), f"{{{path}}}: {cfg.mapping.entity} has no field {path!r}"))
        if problems or entity_type is None or adapter_fn is None or target is None:
            raise ConfigProblems(problems)
        mapper = build_mapper(
            adapter_fn,
            entity_type,
            fields=cfg.mapping.fields,
            value_maps=cfg.mapping.value_maps,
            tables=self.config.mappings,
        )
        retry = cfg.retry
        return RouteRuntime(
            name=cfg.name,
            store=self.store,
            target=target,
            mapper=mapper,
            key_fn=KeyTemplate(cfg.idempotency_key).for_entities(),
            entity_types=ENTITY_TYPES,
            source=source,
            filter=build_filter(cfg.filter) if cfg.filter else None,
            ordering_fn=KeyTemplate(cfg.ordering_key).for_entities() if cfg.ordering_key else None,
            retry=RetryPolicy(
                attempts=retry.attempts,
                initial_backoff_s=retry.initial_backoff,
                max_backoff_s=retry.max_backoff,
                jitter_s=retry.jitter,
                max_inline_wait_s=retry.max_inline_wait,
            ),
            on_failure=OnFailure(cfg.on_failure),
            batch_size=cfg.batch_size,
            concurrency=cfg.concurrency,
            lease_s=self.config.state.lease,
            rate_limit=cfg.rate_limit,
            metrics=self.metrics,
        )

    # ------------------------------------------------------------------ running
    def as_operator(self) -> None:
        """For a command that delivers beside a possibly running hub: its own lease owner and role."""
        self.role = "operator"
        self.lease_owner = f"{self.worker_id}/operator-{os.getpid()}"

    # ------------------------------------------------------------------ the store's health
    @property
    def store_unavailable(self) -> str | None:
        """Why the store is unavailable (None while it answers): what ``/health`` reports."""
        if self._store_down_since is None:
            return None
        return f"store unavailable for {time.monotonic() - self._store_down_since:.1f}s: {self._store_error}"

    def store_failed(self, exc: BaseException) -> None:
        error = str(REDACTOR.redact(f"{type(exc).__name__}: {exc}")).splitlines()[0][:300]
        self._store_failed_at = time.monotonic()
        if self._store_down_since is None:
            self._store_down_since = self._store_failed_at
            log.error("store unavailable; deliveries wait for it", store=self.store.backend, error=error)
        self._store_error = error

    def _store_answered(self) -> None:
        if self._store_down_since is not None and time.monotonic() - self._store_failed_at >= STORE_QUIET_S:
            log.warning(
                "store available again",
                store=self.store.backend,
                after_s=round(time.monotonic() - self._store_down_since, 1),
            )
            self._store_down_since = None
            self._store_error = None

    def _beat_once(self) -> bool:
        me = Instance(
            instance=self.instance,
            worker_id=self.lease_owner,
            role=self.role,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at_ms=self.store.clock(),
            expires_at_ms=self.store.clock() + int(INSTANCE_TTL_S * 1000),
        )
        try:
            self.store.instance_beat(me)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.store_failed(exc)
            return False
        self._store_answered()
        return True

    async def _heartbeat(self) -> None:
        """This process's heartbeat row, and the probe of the store: a write, as a full disk refuses it."""
        while True:
            try:
                up = self._beat_once()
            except Exception:
                log.exception("heartbeat failed")
                up = False
            await asyncio.sleep(HEARTBEAT_S if up else HEARTBEAT_DOWN_S)

    def _unregister(self) -> None:
        try:
            self.store.instance_remove(self.instance)
        except Exception as exc:  # it expires on its own
            log.warning("could not remove this process's heartbeat", error=str(exc).splitlines()[0][:200])

    def live_instances(self) -> list[Instance]:
        """Other processes delivering from this store. One on this host whose process is gone (a SIGKILL)
        is not alive, whatever its heartbeat says."""
        host = socket.gethostname()
        alive = []
        for other in self.store.instances_live():
            if other.instance == self.instance:
                continue
            if other.host == host and not _pid_alive(other.pid):
                continue
            alive.append(other)
        return alive

    def running_hub(self) -> Instance | None:
        """A hub running on this store (``lead2cash run``), if any."""
        return next((i for i in self.live_instances() if i.role == "hub"), None)

    def _recover_leases(self) -> None:
        # Leases of a process that is still alive are never released: its deliveries are in flight.
        live = {i.worker_id for i in self.live_instances()}
        if self.store.is_sqlite:
            # One hub process per SQLite file: a lease of no live process is left by a crashed run.
            released = self.store.release_leases(None, keep_owners=live)
            released += self.store.source_leases_release_orphans(live)
        elif self.lease_owner in live:
            released = 0  # another live process claims as this worker id: its leases are its own
        else:
            released = self.store.release_leases(self.lease_owner)
        self.store.instances_expire()
        if released:
            log.info("released leases of a previous run", count=released, worker=self.lease_owner)

    def _polled(self, name: str) -> float | None:
        trigger = self.route_configs[name].source.trigger
        if trigger.type == "poll":
            return trigger.interval
        if trigger.type == "webhook":
            return trigger.poll_fallback
        return None

    async def ingest(self, name: str, fence: tuple[str, int] | None = None) -> int:
        route = self.routes[name]
        if time.monotonic() < self._source_paused.get(name, 0.0):
            return 0
        try:
            count = await route.ingest_once(fence)
        except DeliveryError as exc:
            # The source's system said no for now (throttled, unavailable): the checkpoint is kept, and a
            # throttled source is not asked again before its Retry-After (deliveries go on).
            if exc.error_class is ErrorClass.THROTTLED and exc.retry_after:
                self._source_paused[name] = time.monotonic() + exc.retry_after
            log.warning("source read failed; checkpoint kept", route=name, error=exc.describe())
            self.read_errors[name] = exc.describe()
            return 0
        except Exception as exc:
            if is_unavailable(exc):
                self.store_failed(exc)
                log.warning("source not read: the store is unavailable", route=name)
                return 0
            log.exception("source read failed; checkpoint kept", route=name)
            self.read_errors[name] = f"{type(exc).__name__}: {exc}"
            return 0
        self.read_errors.pop(name, None)
        if count:
            self.wake(name)
        return count

    async def _poll(self, name: str) -> None:
        # The scheduler's job returns at once: the lease renewal is a store round trip that can outlast a
        # short interval on a busy machine, and a job still running at the next tick makes the scheduler
        # warn. A tick whose renewal is still under way is skipped here instead.
        tick = self._ticks.get(name)
        if tick is not None and not tick.done():
            log.debug("source lease still being renewed; poll tick skipped", route=name)
            return
        self._ticks[name] = asyncio.create_task(self._poll_tick(name), name=f"tick:{name}")

    async def _poll_tick(self, name: str) -> None:
        """The scheduler's tick: start a read of the source unless the last one is still reading. The
        first read of a large backlog outlasts several ticks; that is expected, so a tick is skipped here
        (the scheduler would warn) and the running read, which pages until the source is drained, covers it.
        Only the worker holding the source's lease reads it: N workers spend one worker's API budget."""
        running = self._polls.get(name)
        # The lease is renewed on every tick, a long read's included; a read whose lease was lost (this
        # process stalled) has its next batch refused by the store.
        token = await self._hold_source(name)
        if running is not None and not running.done():
            log.debug("source still being read; poll tick skipped", route=name)
            return
        if token is None:
            return
        fence = (self.lease_owner, token) if token else None
        self._polls[name] = asyncio.create_task(self.ingest(name, fence), name=f"poll:{name}")

    async def _hold_source(self, name: str) -> int | None:
        """Take or keep the lease on polling this route's source. It lasts several poll intervals (at least
        the message lease), so its holder keeps it from tick to tick, and another worker takes over once
        the holder has missed them (it died or stalled). Returns the lease's token (0: a route without a
        source, nothing to hold), None when another worker holds it."""
        source_id = self.routes[name].source_id
        interval = self._polled(name) or 0.0
        if source_id is None:
            return 0
        ttl_ms = int(max(3 * interval, self.config.state.lease) * 1000)
        call = functools.partial(self.store.source_lease, source_id, self.lease_owner, ttl_ms)
        try:
            token = await asyncio.to_thread(call) if self.store.offload else call()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self.store_failed(exc)
            return None
        if token is None:
            log.debug("source polled by another worker", route=name, source=source_id)
        return token

    def wake(self, name: str) -> None:
        event = self._wake.get(name)
        if event is not None:
            event.set()

    async def _deliver_loop(self, name: str) -> None:
        route = self.routes[name]
        event = self._wake.setdefault(name, asyncio.Event())
        store_wait = 0.0
        idle_wait = 0.0
        while not self._stopping.is_set():
            try:
                handled = await route.deliver_once(self.lease_owner)
                if handled:
                    idle_wait = 0.0
                    continue
                event.clear()
                due = (
                    await asyncio.to_thread(self.store.next_due_ms, name)
                    if self.store.offload
                    else self.store.next_due_ms(name)
                )
                store_wait = 0.0
            except Exception as exc:
                # Nothing ends this loop but a stop: a store outage is waited out, anything else logged.
                if is_unavailable(exc):
                    self.store_failed(exc)
                    store_wait = min(STORE_WAIT_S[1], max(STORE_WAIT_S[0], store_wait * 2))
                else:
                    log.exception("delivery loop error", route=name)
                    store_wait = 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=store_wait)
                continue
            wait = 1.0 if due is None else min(1.0, max(0.0, (due - self.store.clock()) / 1000))
            if due is not None and wait <= 0.0:
                idle_wait = min(IDLE_BACKOFF_S[1], max(IDLE_BACKOFF_S[0], idle_wait * 2))
                wait = idle_wait
            wait = max(wait, route.paused_for)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=max(wait, 0.01))

    def _build_summary(self) -> None:
        """The billing summary keeper (and its Salesforce writer), fed by the routes' confirmations."""
        from lead2cash.summary.keeper import SummaryKeeper
        from lead2cash.summary.salesforce import DEFAULT_FIELDS, SalesforceSink

        cfg = self.config.billing_summary
        assert cfg is not None
        lago = self.systems.get(cfg.lago)
        if lago is None or not hasattr(lago, "client"):
            raise ConfigError([self.loaded.issue(("billing_summary", "lago"), "no lago system of that name")])
        entities = {name: c.mapping.entity for name, c in self.route_configs.items()}
        self.summary = SummaryKeeper(self.store, lago.client, entities, poll=cfg.poll)
        for name in self.summary.routes:
            self.routes[name].on_confirmed = self.summary.poke
        sf = cfg.salesforce
        if sf is not None:
            crm = self.systems.get(sf.system)
            if crm is None or not hasattr(crm, "_writer"):
                where = ("billing_summary", "salesforce", "system")
                raise ConfigError([self.loaded.issue(where, "no salesforce system of that name")])
            name = f"{sf.system}/{sf.object}.billing_summary"
            self.summary_sink = SalesforceSink(
                self.summary.state,
                crm._writer(sf.object, sf.match_field, {}, name),
                fields=sf.fields if sf.fields is not None else DEFAULT_FIELDS,
                match_field=sf.match_field,
                interval=sf.interval,
            )
            self.summary.on_change = self.summary_sink.poke

    async def start(self) -> None:
        _freeze_heap()
        self._beat_once()
        self._recover_leases()
        self._stopping.clear()
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        scheduler = AsyncIOScheduler(timezone="UTC")
        for name, cfg in self.route_configs.items():
            self._wake[name] = asyncio.Event()
            interval = self._polled(name)
            trigger: Any = None
            if interval:
                trigger = IntervalTrigger(seconds=interval)
            elif cfg.source.trigger.type == "schedule":
                trigger = CronTrigger.from_crontab(cfg.source.trigger.cron, timezone="UTC")
            if trigger is not None:
                scheduler.add_job(
                    self._poll,
                    trigger,
                    args=[name],
                    id=f"ingest:{name}",
                    max_instances=1,
                    coalesce=True,
                    next_run_time=None if cfg.source.trigger.type == "schedule" else _now(),
                )
            self._tasks.append(asyncio.create_task(self._deliver_loop(name), name=f"deliver:{name}"))
        every = self.config.reconcile.three_way.every
        if every:
            scheduler.add_job(
                self.reconcile_three_way,
                IntervalTrigger(seconds=every),
                id="reconcile:three_way",
                max_instances=1,
                coalesce=True,
                next_run_time=_now(),
            )
        scheduler.start()
        self._scheduler = scheduler
        if self.summary is not None:
            self._tasks.append(asyncio.create_task(self.summary.run(self._stopping), name="billing-summary"))
        if self.summary_sink is not None:
            self._tasks.append(
                asyncio.create_task(self.summary_sink.run(self._stopping), name="billing-summary-salesforce")
            )
        if self.config.web.enabled:
            self._tasks.append(asyncio.create_task(self._serve_web(), name="web"))
        log.info("hub started", routes=list(self.routes), worker=self.worker_id, store=self.store.backend)

    async def reconcile_three_way(self) -> Any:
        """The scheduled ``reconcile three-way`` on the hub's own connectors: its result as metrics (and
        the JSON report, with ``reconcile.three_way.out``). Returns the report, None when a system could
        not be read (counted in ``lead2cash_reconcile_failures_total``)."""
        from lead2cash.reconcile.three_way import ThreeWay, publish

        settings = self.config.reconcile.three_way
        try:
            check = ThreeWay(self.config, self.store, self.systems, config_files=self.loaded.files)
            report = await check.run()
            if settings.out:
                out = Path(settings.out)
                base = self.loaded.files[0].parent if self.loaded.files else Path.cwd()
                await asyncio.to_thread(report.write_json, out if out.is_absolute() else base / out)
        except Exception as exc:
            self.metrics.reconcile_failures.labels("three_way").inc()
            error = str(REDACTOR.redact(f"{type(exc).__name__}: {exc}")).splitlines()[0][:300]
            log.warning("three-way reconciliation failed", error=error)
            return None
        self._reconciled = publish(self.metrics, report, getattr(self, "_reconciled", ()))
        log.info(
            "three-way reconciliation",
            clean=report.clean,
            differences=len(report.differences),
            seconds=round(report.seconds, 2),
        )
        return report

    async def _serve_web(self) -> None:
        import uvicorn

        from lead2cash.web.app import UVICORN_LOG_CONFIG, create_app

        web = self.config.web
        config = uvicorn.Config(
            create_app(self),
            host=web.host,
            port=web.port,
            log_config=UVICORN_LOG_CONFIG,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._web = uvicorn.Server(config)
        await self._web.serve()

    async def stop(self) -> None:
        self._stopping.set()
        if self._web is not None:
            self._web.should_exit = True
            # Let uvicorn close its listening socket: a cancelled server keeps the port bound, so a hub
            # restarted in the same process could not listen again.
            web_task = next((t for t in self._tasks if t.get_name() == "web"), None)
            if web_task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(web_task), timeout=5)
            self._web = None
        for event in self._wake.values():
            event.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self._ticks.values(), *self._polls.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that failed must not turn a clean stop into a failed one
                log.exception("task failed", task=task.get_name())
        self._tasks.clear()
        self._polls.clear()
        self._ticks.clear()
        try:
            self.store.source_lease_release(self.lease_owner)
        except Exception as exc:  # they expire on their own
            log.warning("could not give up source leases", error=str(exc).splitlines()[0][:200])
        self._unregister()
        log.info("hub stopped")

    def with_derived(self, names: Sequence[str]) -> list[str]:
        """``names`` and every route that reads their confirmations (the hub source), transitively."""
        out = list(dict.fromkeys(names))
        for name in out:  # grows while it is walked
            for other, route in self.routes.items():
                source = route.source
                if isinstance(source, ConfirmationsSource) and source.route == name and other not in out:
                    out.append(other)
        return out

    async def run_until_idle(self, timeout: float | None = None, routes: Sequence[str] | None = None) -> bool:
        """Ingest every polled source and deliver until no route has work; True when idle, False on timeout.
        ``routes`` limits the run to those routes (``with_derived`` adds the routes reading their
        confirmations). Used by ``lead2cash run --until-idle``, ``dlq replay``, the demo and tests. A store
        outage is waited out (within ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._beat_once()
                self._recover_leases()
                break
            except Exception as exc:
                if not is_unavailable(exc) or (deadline is not None and time.monotonic() > deadline):
                    raise
                self.store_failed(exc)
                await asyncio.sleep(STORE_WAIT_S[1])
        beat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        try:
            return await self._drain(deadline, list(routes or self.routes))
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self._unregister()

    async def _drain(self, deadline: float | None, names: list[str]) -> bool:
        derived = [n for n in names if isinstance(self.routes[n].source, ConfirmationsSource)]
        while True:
            try:
                ingested = 0
                for name in names:
                    if self.routes[name].source is not None and self._polled(name) is not None:
                        ingested += await self.ingest(name)
                handled = 1
                while handled:
                    handled = 0
                    for name in names:
                        handled += await self.routes[name].deliver_once(self.lease_owner)
                    if handled:
                        # Deliveries are new confirmations: the routes reading them have work now (what
                        # they take in is pending, so it keeps this loop going by itself).
                        for name in derived:
                            handled += await self.ingest(name)
                pending = {n: self.store.count_messages(n, "pending") for n in names}
                active = [n for n in names if pending[n] and not self.routes[n].halted]
                if not active and not ingested and not any(self.routes[n].unrecorded for n in names):
                    return True
                if deadline is not None and time.monotonic() > deadline:
                    return False
                dues = [d for n in active if (d := self.store.next_due_ms(n)) is not None]
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self.store_failed(exc)
                if deadline is not None and time.monotonic() > deadline:
                    return False
                await asyncio.sleep(STORE_WAIT_S[1])
                continue
            pause = max((self.routes[n].paused_for for n in active), default=0.0)
            nap = min(1.0, max(0.0, (min(dues) - self.store.clock()) / 1000)) if dues else 0.0
            await asyncio.sleep(max(nap, min(pause, 1.0), 0.005 if active else 0.0))

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()
            await self.aclose_systems()

    async def aclose_systems(self) -> None:
        """Close systems' sessions and pools (HTTP keep-alive connections, thread pools)."""
        for name, system in self.systems.items():
            closer = getattr(system, "aclose", None)
            if closer is None:
                continue
            try:
                await closer()
            except Exception:
                log.exception("closing system failed", system=name)

    def close(self) -> None:
        for name, system in self.systems.items():
            closer = getattr(system, "close", None)
            if closer is None:
                continue
            try:
                closer()
            except Exception:
                log.exception("closing system failed", system=name)
        self.store.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
