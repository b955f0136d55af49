"""``lead2cash test``: run config test files against the routes of a config, like ``rpk connect test``.

Every test first runs the route's message translator on its input, with no network: filter, mapping
(adapter, field overrides, value maps, validation), idempotency key and, when the target offers one, the
payload ``preview`` the target would send. A ``sandbox: true`` test then delivers the record through the
route to the sandboxes (with its declared faults) on a fresh state store, and checks what happened there:
the message delivered and its effect confirmed in the ledger, the sandbox's effect counts, or the dead
letter and its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from lead2cash.config import ConfigError, LoadedConfig
from lead2cash.errors import DeliveryError, ErrorClass
from lead2cash.hub import Hub
from lead2cash.routes.route import RouteRuntime, describe_error
from lead2cash.store import EffectState, Store
from lead2cash.testing.compare import show, subset_diff
from lead2cash.testing.sandboxes import SandboxEnvironment, effect_delta, injected_delta
from lead2cash.testing.spec import ConfigTest, ConfigTestFileError, LoadedTests, find_test_files, load_tests


@dataclass
class Translation:
    """What the route's translator made of one record."""

    filtered: bool = False
    canonical: dict[str, Any] | None = None
    key: str | None = None
    dead_letter: tuple[str, str] | None = None  # (stage, reason)
    target: Any = None
    target_note: str | None = None  # why there is no target payload to compare


@dataclass
class Result:
    file: Path
    line: int
    name: str
    route: str
    sandbox: bool
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the test could not run (unknown route, unreadable input)

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return not self.failed and not self.file_errors and bool(self.results)


def translate(route: RouteRuntime, record: dict[str, Any]) -> Translation:
    """The route's filter, mapping and key on ``record``, then the target's preview; no I/O."""
    out = Translation()
    try:
        if route.filter is not None and not route.filter(record):
            out.filtered = True
            return out
        entity = route.mapper(record)
        out.canonical = entity.model_dump(mode="json")
        out.key = route.key_fn(entity)
    except Exception as exc:  # the route dead-letters these at mapping, with this reason
        out.dead_letter = ("mapping", describe_error(exc))
        return out
    preview: Callable[[Any, str], Any] | None = getattr(route.target, "preview", None)
    if preview is None:
        out.target_note = f"target {route.target.name} has no payload preview"
        return out
    try:
        out.target = preview(entity, out.key)
    except DeliveryError as exc:
        if exc.error_class is ErrorClass.PERMANENT:
            # The target refuses it before any call: dead-lettered at delivery, whatever the retries.
            out.dead_letter = ("delivery", describe_error(exc))
        else:
            out.target_note = f"target preview failed: {describe_error(exc)}"
    except Exception as exc:
        out.target_note = f"target preview failed: {describe_error(exc)}"
    return out


def _check_translation(case: ConfigTest, t: Translation, result: Result) -> None:
    e = case.expect
    fail = result.failures.append
    if e.filtered is not None and e.filtered != t.filtered:
        fail(
            "filtered: expected the filter to drop the record"
            if e.filtered
            else "filtered: the filter dropped it"
        )
    if t.filtered:
        return
    expect_dead = e.dead_letter is not None
    if (
        t.dead_letter is not None
        and not expect_dead
        and not (case.sandbox and t.dead_letter[0] == "delivery")
    ):
        fail(f"dead-lettered at {t.dead_letter[0]}: {t.dead_letter[1]}")
        return
    if e.key is not None:
        version = (t.canonical or {}).get("version")
        expected_key = e.key.replace("{version}", str(version)) if version is not None else e.key
        if t.key != expected_key:
            fail(f"key: expected {show(expected_key)}, got {show(t.key)}")
    if e.canonical is not None:
        if t.canonical is None:
            fail("canonical: no canonical record")
        else:
            result.failures.extend(subset_diff(e.canonical, t.canonical, "canonical"))
    if e.target is not None:
        if t.target is None:
            fail(f"target: cannot compare: {t.target_note or 'no payload'}")
        else:
            expected_target = _with_key(e.target, t.key or "")
            result.failures.extend(subset_diff(expected_target, t.target, "target"))
    if e.dead_letter is not None and not case.sandbox:
        _check_dead(e.dead_letter, t.dead_letter, result)


def _with_key(expected: Any, key: str) -> Any:
    """The expectation with '{key}' in its strings replaced by the record's idempotency key."""
    if isinstance(expected, str):
        return expected.replace("{key}", key)
    if isinstance(expected, dict):
        return {k: _with_key(v, key) for k, v in expected.items()}
    if isinstance(expected, list):
        return [_with_key(v, key) for v in expected]
    return expected


def _check_dead(expected: Any, got: tuple[str, str] | None, result: Result) -> None:
    if got is None:
        result.failures.append("dead_letter: expected a dead letter, the record went through")
        return
    stage, reason = got
    if expected.stage and expected.stage != stage:
        result.failures.append(f"dead_letter.stage: expected {expected.stage}, got {stage} ({reason})")
    if expected.reason_contains and expected.reason_contains not in reason:
        result.failures.append(
            f"dead_letter.reason: expected it to contain {show(expected.reason_contains)}, got {show(reason)}"
        )


class ConfigTestRunner:
    def __init__(
        self,
        loaded: LoadedConfig,
        console: Console,
        *,
        sandbox: bool = True,
        select: str | None = None,
    ) -> None:
        self.loaded = loaded
        self.console = console
        self.allow_sandbox = sandbox
        self.select = select
        self._envs: dict[tuple[int, int], SandboxEnvironment] = {}

    # ------------------------------------------------------------------ running
    def run(self, paths: Iterable[Path]) -> Summary:
        summary = Summary()
        files: list[LoadedTests] = []
        for path in find_test_files(list(paths)):
            try:
                files.append(load_tests(path))
            except ConfigTestFileError as exc:
                summary.file_errors.extend(exc.problems)
        for problem in summary.file_errors:
            self.console.print(f"[red]ERROR[/red] {escape(problem)}", highlight=False, soft_wrap=True)
        hub = Hub(self.loaded, store=Store("sqlite:///:memory:"), configure_logs=False)
        try:
            for tests in files:
                self.console.print(f"[bold]{escape(str(tests.path))}[/bold]", highlight=False, soft_wrap=True)
                for case, line in zip(tests.spec.tests, tests.lines, strict=True):
                    if self.select and self.select not in case.name and self.select not in case.route:
                        continue
                    result = self._run_one(hub, tests, case, line)
                    summary.results.append(result)
                    self._report(result)
        finally:
            hub.close()
            for env in self._envs.values():
                env.close()
        self._summary(summary)
        return summary

    def _run_one(self, hub: Any, tests: LoadedTests, case: ConfigTest, line: int) -> Result:
        result = Result(tests.path, line, case.name, case.route, case.sandbox)
        started = time.perf_counter()
        try:
            route = hub.routes.get(case.route)
            if route is None:
                known = ", ".join(sorted(hub.routes)) or "none"
                result.error = f"no route {case.route!r} in this config (routes: {known})"
                return result
            record = tests.record(case)
            translation = translate(route, record)
            _check_translation(case, translation, result)
            if translation.target_note and case.expect.target is None:
                result.notes.append(translation.target_note)
            if case.sandbox and not translation.filtered:
                if not self.allow_sandbox:
                    result.notes.append("delivery part skipped (--no-sandbox)")
                elif translation.dead_letter is None or translation.dead_letter[0] == "delivery":
                    self._deliver(tests, case, record, translation, result)
                elif case.expect.dead_letter is not None:
                    _check_dead(case.expect.dead_letter, translation.dead_letter, result)
        except ConfigTestFileError as exc:
            result.error = "; ".join(exc.problems)
        except ConfigError as exc:
            result.error = "config: " + "; ".join(str(i) for i in exc.issues)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            result.seconds = time.perf_counter() - started
        return result

    # ------------------------------------------------------------------ delivery tests
    def _env(self, tests: LoadedTests) -> SandboxEnvironment:
        settings = tests.spec.sandbox
        key = (settings.seed, settings.seed_size)
        if key not in self._envs:
            self._envs[key] = SandboxEnvironment(settings.seed, settings.seed_size)
        return self._envs[key]

    def _deliver(
        self, tests: LoadedTests, case: ConfigTest, record: dict[str, Any], t: Translation, result: Result
    ) -> None:
        env = self._env(tests)
        hub = Hub(env.config_for(self.loaded), store=Store(env.store_url()), configure_logs=False)
        try:
            route: RouteRuntime = hub.routes[case.route]
            env.reset()
            effects_before, injected_before = env.effects(), env.injected()
            env.set_faults(case.faults.systems)
            try:
                for _ in range(case.faults.duplicate_delivery):
                    route.submit([record])
                idle = asyncio.run(self._drain(hub, route, case, env))
            finally:
                env.clear_faults()
            delta = effect_delta(effects_before, env.effects())
            fired = injected_delta(injected_before, env.injected())
            if case.faults.systems:
                if fired:
                    result.notes.append(
                        "faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(fired.items()))
                    )
                else:
                    result.notes.append("no declared fault fired: this test did not exercise it")
            self._check_delivery(hub, route, case, t, idle, delta, result)
        finally:
            hub.close()

    async def _drain(self, hub: Any, route: RouteRuntime, case: ConfigTest, env: SandboxEnvironment) -> bool:
        """Deliver this route's inbox until nothing is pending (no source is read: only the test's input
        is in flight). True when idle before the timeout."""
        clearing: asyncio.Task[None] | None = None
        if case.faults.clear_after is not None:

            async def clear(after: float) -> None:
                await asyncio.sleep(after)
                await asyncio.to_thread(env.clear_faults)

            clearing = asyncio.create_task(clear(case.faults.clear_after))
        deadline = time.monotonic() + case.timeout
        store = hub.store
        try:
            while True:
                if await route.deliver_once(hub.worker_id):
                    continue
                if not store.count_messages(route.name, "pending") or route.halted:
                    return True
                if time.monotonic() > deadline:
                    return False
                due = store.next_due_ms(route.name)
                nap = 0.01 if due is None else max(0.01, (due - store.clock()) / 1000)
                await asyncio.sleep(min(1.0, max(nap, route.paused_for)))
        finally:
            if clearing is not None:
                clearing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await clearing
            await hub.aclose_systems()

    def _check_delivery(
        self,
        hub: Any,
        route: RouteRuntime,
        case: ConfigTest,
        t: Translation,
        idle: bool,
        delta: dict[str, dict[str, dict[str, int]]],
        result: Result,
    ) -> None:
        store, e, fail = hub.store, case.expect, result.failures.append
        if not idle:
            fail(f"not delivered within {case.timeout:g}s (still pending)")
        if route.halted:
            fail(f"route halted: {route.halted}")
        messages = store.messages_for(route.name)
        dead = store.dlq_list(route.name, status=None)
        if e.delivered == "once":
            undelivered = [m for m in messages if m.status != "delivered"]
            if dead:
                fail(f"delivered: dead-lettered at {dead[0].stage}: {dead[0].error_message}")
            elif undelivered or not messages:
                fail(f"delivered: {len(undelivered)} of {len(messages)} message(s) not delivered")
            keys = {m.idempotency_key for m in messages}
            for key in sorted(keys):
                effect = store.effect_get(route.target.name, key)
                if effect is None or effect.state is not EffectState.CONFIRMED:
                    fail(
                        f"delivered: effect {key} is {effect.state.value if effect else 'not in the ledger'}"
                    )
                else:
                    result.notes.append(f"delivered: {key} -> {effect.target_ref}")
        if e.dead_letter is not None:
            got = (dead[0].stage, dead[0].error_message) if dead else None
            _check_dead(e.dead_letter, got, result)
        elif dead and e.delivered is None:
            fail(f"dead-lettered at {dead[0].stage}: {dead[0].error_message}")
        key = t.key or ""
        for system, kinds in e.effects.items():
            for kind, counts in kinds.items():
                for template, expected in counts.items():
                    name = template.replace("{key}", key)
                    got_n = delta.get(system, {}).get(kind, {}).get(name, 0)
                    if got_n != expected:
                        seen = show(delta.get(system, {}).get(kind, {}))
                        fail(
                            f"effects.{system}.{kind}[{name}]: expected {expected}, got {got_n} (this test's {kind}: {seen})"
                        )

    # ------------------------------------------------------------------ output
    def _report(self, r: Result) -> None:
        kind = "sandbox" if r.sandbox else "mapping"
        where = f"{r.file.name}:{r.line}"
        if r.error is not None:
            status = "[red]ERROR[/red]"
        elif r.failures:
            status = "[red]FAIL [/red]"
        else:
            status = "[green]PASS [/green]"
        self.console.print(
            f"  {status} {escape(r.route)} > {escape(r.name)} [dim]({kind}, {where}, {r.seconds:.2f}s)[/dim]",
            highlight=False,
            soft_wrap=True,
        )
        if r.error is not None:
            self.console.print(f"        [red]{escape(r.error)}[/red]", highlight=False, soft_wrap=True)
        for failure in r.failures:
            self.console.print(f"        [red]✗[/red] {escape(failure)}", highlight=False, soft_wrap=True)
        for note in r.notes:
            self.console.print(f"        [dim]· {escape(note)}[/dim]", highlight=False, soft_wrap=True)

    def _summary(self, s: Summary) -> None:
        colour = "green" if s.ok else "red"
        extra = f", {len(s.file_errors)} test file error(s)" if s.file_errors else ""
        if not s.results and not s.file_errors:
            extra = " (no tests found)"
        self.console.print(f"[{colour}]{s.passed} passed, {s.failed} failed{extra}[/{colour}]")
