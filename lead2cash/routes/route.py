"""A route at run time: ingest from its source into the inbox, deliver from the inbox to its target.

Delivery per message: reserve the key in the effect ledger, mark it sent, call the target, confirm.
A key found "sent" (a crash or a lost response between the call and the confirmation) is first looked up
in the target and resent only when the target has no trace of it. Every ledger step and outcome is fenced
by the token the message was claimed with, and ownership is re-checked right before the target is called:
a worker that stalled past its lease (and lost the message to another) writes nothing. Retries use tenacity with exponential
backoff and jitter, stretched to any Retry-After the target sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from lead2cash.observability import REDACTOR, Metrics
from lead2cash.pacing import LeaseLost, RateLimiter, current_fence, current_pacer, delivery_in_doubt
from lead2cash.retrying import first_then
from lead2cash.routes.errors import DeliveryError, ErrorClass, TransientError
from lead2cash.routes.interfaces import (
    AcknowledgingSource,
    KeyFunction,
    Mapper,
    Predicate,
    RereadableSource,
    Source,
    Target,
)
from lead2cash.routes.policy import OnFailure, RetryPolicy
from lead2cash.store import (
    UNCHECKED,
    DeadLetter,
    Effect,
    EffectState,
    Message,
    NewDeadLetter,
    NewMessage,
    Store,
    XrefWrite,
    is_unavailable,
)

log = structlog.get_logger("lead2cash.route")
T = TypeVar("T")


def _json(data: Any) -> str:
    return json.dumps(data, default=str, sort_keys=True)


def describe_error(exc: BaseException) -> str:
    """A dead-letter reason that names the field; never the offending input values, and with every
    configured secret redacted (a target's error text may echo a token)."""
    return str(REDACTOR.redact(_describe(exc)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "<record>"
            parts.append(f"{loc}: {err['msg']}")
        return f"invalid {exc.title}: " + "; ".join(parts)
    if isinstance(exc, DeliveryError):
        return exc.describe()
    return f"{type(exc).__name__}: {exc}"


RECORD_WINDOW_S = 0.005
STORE_RETRY_S = (0.25, 2.0)  # first and longest wait between store calls while the store is unavailable


class StoreUnavailable(Exception):
    """The store failed under a delivery (raised from the store error): the delivery waits for the store
    and is tried again, without using one of the route's attempts."""


@dataclass
class Outcome:
    message: Message
    # confirmed | dead | deferred | released (the store failed under it: due again, no attempt used) |
    # superseded (another worker holds the message now: nothing to record)
    status: str
    target_ref: str | None = None
    error_class: str | None = None
    error: str | None = None
    delay_ms: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Replayed:
    """What the replay of a mapping dead letter did: where the record came from (``read``, for the
    operator) and what it became: queued, duplicate (its key is in the inbox already: the poll took the
    correction first), dead (failed mapping again: ``reason``), filtered (the route's filter drops it
    now) or gone (the source no longer holds it; the dead letter is left open)."""

    read: str
    outcome: str
    reason: str | None = None


@dataclass
class RouteRuntime:
    name: str
    store: Store
    target: Target
    mapper: Mapper
    key_fn: KeyFunction
    entity_types: Mapping[str, type[BaseModel]]
    source: Source | None = None
    filter: Predicate | None = None
    ordering_fn: KeyFunction | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_failure: OnFailure = OnFailure.DEAD_LETTER
    batch_size: int = 200
    concurrency: int = 16
    lease_s: float = 120.0
    rate_limit: float | None = None  # target calls (deliver or lookup) per second, at most
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.source_id = f"{self.name}:{self.source.name}" if self.source else None
        self._paused_until = 0.0
        self._halted: str | None = None
        self._halt_checked = 0.0
        self._sem = asyncio.Semaphore(self.concurrency)
        self._unrecorded: list[Outcome] = []  # outcomes the store could not take yet (it was unavailable)
        self._claims_in_doubt = False  # a claim failed midway: leases may be held on messages not started
        # Message id -> monotonic time until which this process vouches for its lease without asking the
        # store (half a lease after it was claimed or renewed). Past it (the process stalled, or the
        # delivery waited long), ownership is checked in the store right before the target is called.
        self._held_until: dict[int, float] = {}
        # Set by the hub: told of every store error (it reports the store unavailable meanwhile).
        self.on_store_error: Any = None
        # Set by the hub: told when confirmed outcomes were recorded (the billing summary reads them).
        self.on_confirmed: Any = None
        self._bucket = RateLimiter(self.rate_limit) if self.rate_limit else None
        state = self.store.route_state_get(self.name)
        if state is not None and state.status == "halted":
            self._halted = state.reason or "halted"

    # ------------------------------------------------------------------ state
    @property
    def halted(self) -> str | None:
        return self._halted

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float, reason: str) -> None:
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.metrics.paused.labels(self.name).set(1)
            try:
                self.store.route_state_set(
                    self.name, "paused", reason, self.store.clock() + int(seconds * 1000)
                )
            except Exception as exc:
                # The pause is kept in memory; its row only informs `route list`.
                if not is_unavailable(exc):
                    raise
                self._store_error(exc)
            log.warning("route paused", route=self.name, seconds=round(seconds, 3), reason=reason)

    def _store_error(self, exc: BaseException) -> None:
        if self.on_store_error is not None:
            self.on_store_error(exc)

    def halt(self, reason: str) -> None:
        self._halted = reason
        self.store.route_state_set(self.name, "halted", reason)
        log.error("route halted", route=self.name, reason=reason)

    def resume(self) -> None:
        self._halted = None
        self._paused_until = 0.0
        self.metrics.paused.labels(self.name).set(0)
        self.store.route_state_set(self.name, "running", None)

    # ------------------------------------------------------------------ ingest
    def _to_message(self, record: Mapping[str, Any]) -> NewMessage | NewDeadLetter | None:
        trace_id = uuid.uuid4().hex
        try:
            if self.filter is not None and not self.filter(record):
                return None
            entity = self.mapper(record)
            key = self.key_fn(entity)
            ordering = self.ordering_fn(entity) if self.ordering_fn else None
            return NewMessage(
                idempotency_key=key,
                entity_type=type(entity).__name__,
                payload=entity.model_dump_json(),
                trace_id=trace_id,
                source_payload=_json(record),
                ordering_key=ordering,
            )
        except Exception as exc:  # a bad record is quarantined; the batch goes on
            # Logged and counted by the caller once the store took it (a duplicate delivery stores nothing).
            return NewDeadLetter(
                original_payload=_json(record), error_message=describe_error(exc), trace_id=trace_id
            )

    def _count_dead(self, dead: Sequence[NewDeadLetter]) -> None:
        for d in dead:
            log.warning(
                "record dead-lettered at mapping",
                route=self.name,
                trace_id=d.trace_id,
                reason=d.error_message,
            )
        if dead:
            self.metrics.dead_letters.labels(self.name, "mapping").inc(len(dead))

    def submit(
        self,
        records: list[Mapping[str, Any]],
        checkpoint: str | None = None,
        rejects: Sequence[tuple[str, str]] = (),
        receipt: tuple[str, str] | None = None,
        xrefs: Sequence[XrefWrite] = (),
        checkpoint_from: str | None = UNCHECKED,
        fence: tuple[str, int] | None = None,
    ) -> int | None:
        """Map records and write them to the inbox (with the checkpoint, in one transaction). With a
        ``receipt`` (sender, delivery key), a delivery seen before writes nothing and returns None: it is
        recognised before any mapping, so a duplicate maps, logs and counts nothing. So does a batch read
        under a source lease (``fence``: owner, token) that another worker has taken since."""
        done = self.submit_counted(records, checkpoint, rejects, receipt, xrefs, checkpoint_from, fence)
        return None if done is None else done[0]

    def submit_counted(
        self,
        records: list[Mapping[str, Any]],
        checkpoint: str | None = None,
        rejects: Sequence[tuple[str, str]] = (),
        receipt: tuple[str, str] | None = None,
        xrefs: Sequence[XrefWrite] = (),
        checkpoint_from: str | None = UNCHECKED,
        fence: tuple[str, int] | None = None,
    ) -> tuple[int, int] | None:
        """``submit``, answering (messages queued, dead letters written), or None for a duplicate."""
        if receipt is not None and self.store.receipt_seen(*receipt):
            return None
        new: list[NewMessage] = []
        dead: list[NewDeadLetter] = [
            NewDeadLetter(original_payload=raw, error_message=reason, trace_id=uuid.uuid4().hex)
            for raw, reason in rejects
        ]
        for record in records:
            item = self._to_message(record)
            if isinstance(item, NewMessage):
                new.append(item)
            elif item is not None:
                dead.append(item)
        cp = (self.source_id, checkpoint) if checkpoint is not None and self.source_id else None
        cp_source = self.source_id
        if not self.store.enqueue(
            self.name,
            new,
            checkpoint=cp,
            dead=dead,
            receipt=receipt,
            xrefs_written=xrefs,
            checkpoint_from=checkpoint_from,
            source_fence=(cp_source, *fence) if fence is not None and cp_source else None,
        ):
            return None  # a concurrent copy of the delivery won the receipt: it counts, this one not
        self._count_dead(dead)
        self.metrics.ingested.labels(self.name).inc(len(new))
        return len(new), len(dead)

    async def replay_mapping(self, dead: DeadLetter, *, stored_payload: bool = False) -> Replayed:
        """Replay a mapping-stage dead letter: read its record again from the source (it may have been
        corrected there) and submit that; the stored payload stays on the dead letter as evidence. The
        stored payload itself is submitted only with ``stored_payload`` or when the source cannot
        re-read a record, and ``read`` says which happened."""
        if dead.stage != "mapping":
            raise ValueError(f"dead letter {dead.id} failed at {dead.stage}, not at mapping")
        if dead.status != "open":
            raise ValueError(f"dead letter {dead.id} is {dead.status}, not open")
        try:
            stored = json.loads(dead.original_payload)
        except ValueError:
            raise ValueError(
                f"dead letter {dead.id}: the stored payload is not a JSON record (the source could not "
                "parse it); fix it in the source and move the checkpoint back instead"
            ) from None
        source = self.source
        records: list[Mapping[str, Any]] = [stored]
        xrefs: Sequence[XrefWrite] = ()
        if stored_payload:
            read = "from its stored payload, as asked"
        elif isinstance(source, RereadableSource):
            batch = await source.reread(stored)
            if not batch.records:
                return Replayed(
                    f"re-read from {source.name}",
                    "gone",
                    "the source no longer holds this record (deleted, or it no longer matches the "
                    "source's filters): left open; discard it, or replay the stored payload",
                )
            records, xrefs = list(batch.records), batch.xrefs
            read = f"re-read from {source.name}"
        else:
            what = source.name if source is not None else "this route's source"
            read = f"from its stored payload: {what} cannot re-read a record"
        items = [self._to_message(r) for r in records]
        mapped = [i for i in items if isinstance(i, NewMessage)]
        new = [m for m in mapped if self.store.message_by_key(self.name, m.idempotency_key) is None]
        again = [i for i in items if isinstance(i, NewDeadLetter)]
        self.store.enqueue(self.name, new, dead=again, xrefs_written=xrefs)
        self._count_dead(again)
        self.store.dlq_mark(dead.id, "replayed")
        self.metrics.ingested.labels(self.name).inc(len(new))
        if again:
            return Replayed(read, "dead", again[0].error_message)
        if mapped and not new:
            return Replayed(read, "duplicate")
        return Replayed(read, "queued" if new else "filtered")

    async def ingest_once(self, fence: tuple[str, int] | None = None) -> int:
        """Read the source from its checkpoint until it has nothing more; returns records enqueued. With
        ``fence`` (owner, token of the source's lease) the read stops at the first batch the store refuses
        because another worker took the source over."""
        if self.source is None or self.source_id is None:
            return 0
        total = 0
        checkpoint = self.store.checkpoint_get(self.source_id)
        while True:
            batch = await self.source.read(checkpoint, self.batch_size)
            records = list(batch.records)
            cp = batch.checkpoint
            written = self.submit(
                records, cp, batch.rejects, xrefs=batch.xrefs, checkpoint_from=checkpoint, fence=fence
            )
            if written is None:
                # Not in the inbox: a bus keeps it unacknowledged for the worker that holds the lease now.
                log.warning("source lease lost during a read; batch dropped", route=self.name)
                return total
            total += written
            if isinstance(self.source, AcknowledgingSource):
                # The batch is in the inbox (committed): only now may a bus forget it.
                await self.source.committed(batch)
            if batch.checkpoint is not None:
                if (
                    batch.checkpoint != checkpoint
                    and self.store.checkpoint_get(self.source_id) != batch.checkpoint
                ):
                    # Set by an operator while this read was under way: theirs stands, and the next read
                    # starts from it (what this one read is in the inbox; a re-read adds nothing twice).
                    log.info("checkpoint moved during a read; kept", route=self.name, source=self.source_id)
                    return total
                checkpoint = batch.checkpoint
            if not batch.more:
                return total

    # ------------------------------------------------------------------ deliver
    async def deliver_once(self, worker: str) -> int:
        """Deliver what is due until nothing is; returns the number of messages handled.

        Claims are refilled as deliveries finish and outcomes are recorded as they complete, so one slow
        message (a long Retry-After, a hung connection) never holds the rest of its batch. Per-key order
        holds: a claim never takes a message whose key has an earlier one pending, in flight included."""
        if self._halted and time.monotonic() >= self._halt_checked + 5.0:
            # An operator may have resumed the route from another process (lead2cash route resume).
            self._halt_checked = time.monotonic()
            state = await self._call(self.store.route_state_get, self.name)
            if state is None or state.status != "halted":
                self._halted = None
                log.info("route resumed", route=self.name)
        handled = 0
        in_flight: dict[asyncio.Task[Outcome], int] = {}  # task -> message id
        lease_ms = int(self.lease_s * 1000)
        renew_every = self.lease_s / 3
        renewed = time.monotonic()
        # While the store is unavailable the deliveries in flight go on (each waits for the store where it
        # needs it); the store is asked again after a pause, and outcomes wait in memory until it answers.
        store_wait = 0.0
        store_retry_at = 0.0
        try:
            while True:
                if time.monotonic() >= store_retry_at:
                    try:
                        await self._call(self._flush)
                        if self._claims_in_doubt:
                            await self._call(
                                self.store.release_unstarted, self.name, worker, list(in_flight.values())
                            )
                            self._claims_in_doubt = False
                        if len(in_flight) < self.concurrency and not self._halted and self.paused_for <= 0:
                            handled += await self._start(worker, self.batch_size - len(in_flight), in_flight)
                        if in_flight and time.monotonic() - renewed >= renew_every:
                            # A delivery may outlive its lease (retries, Retry-After): keep it ours, so no
                            # claim (another worker's, or this one's refill) takes a message in flight.
                            asked = time.monotonic()
                            ids = list(in_flight.values())
                            await self._call(self.store.renew_leases, ids, worker, lease_ms)
                            renewed = time.monotonic()
                            # Renewal is by owner, not token: a message lost meanwhile is still caught by
                            # the token check before its target call and by every fenced write.
                            for mid in ids:
                                self._held_until[mid] = asked + self.lease_s / 2
                        store_wait = 0.0
                    except Exception as exc:
                        if not is_unavailable(exc) or not in_flight:
                            raise
                        self._store_error(exc)
                        store_wait = min(STORE_RETRY_S[1], max(STORE_RETRY_S[0], store_wait * 2))
                        store_retry_at = time.monotonic() + store_wait
                if not in_flight:
                    return handled
                wake_at = renewed + renew_every
                if store_wait:
                    wake_at = min(wake_at, store_retry_at)
                done, _ = await asyncio.wait(
                    in_flight,
                    timeout=max(0.0, wake_at - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    continue
                if len(in_flight) > len(done):
                    # Gather what finishes within a few ms into one store transaction.
                    more, _ = await asyncio.wait(set(in_flight) - done, timeout=RECORD_WINDOW_S)
                    done |= more
                for task in done:
                    self._held_until.pop(in_flight.pop(task), None)
                self._unrecorded.extend(t.result() for t in done)
        finally:
            for task in in_flight:  # the hub is stopping: the leases of these are recovered at start
                task.cancel()
                self._held_until.pop(in_flight[task], None)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call from the event loop: in a thread where the store asks for it (PostgreSQL), so a
        network round trip never holds the other deliveries of this process."""
        if self.store.offload:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def _start(self, worker: str, limit: int, in_flight: dict[asyncio.Task[Outcome], int]) -> int:
        if limit <= 0:
            return 0
        try:
            return await self._claim_and_start(worker, limit, in_flight)
        except Exception as exc:
            if is_unavailable(exc):
                # The claim may have committed without our hearing it, or claimed messages were not
                # started: free them once the store answers, rather than after a whole lease.
                self._claims_in_doubt = True
            raise

    def _claim(
        self, worker: str, limit: int, busy: set[int]
    ) -> tuple[list[Message], dict[str, Effect], set[int]]:
        claimed = self.store.claim(self.name, worker, limit, int(self.lease_s * 1000))
        # A message whose lease ran out while it was still in flight here is not started twice.
        claimed = [m for m in claimed if m.id not in busy]
        before, held = self.store.effects_start(self.target.name, self.name, claimed)
        return claimed, before, held

    async def _claim_and_start(
        self, worker: str, limit: int, in_flight: dict[asyncio.Task[Outcome], int]
    ) -> int:
        asked = time.monotonic()
        claimed, before, held = await self._call(self._claim, worker, limit, set(in_flight.values()))
        started = [m for m in claimed if m.id in held]
        if not started:
            return 0
        vouched = asked + self.lease_s / 2
        known: list[Outcome] = []
        to_send: list[Message] = []
        for m in started:
            prior = before.get(m.idempotency_key)
            if prior is not None and prior.state is EffectState.CONFIRMED:
                known.append(Outcome(m, "confirmed", prior.target_ref))
            else:
                to_send.append(m)
        ambiguous = {
            m.idempotency_key
            for m in to_send
            if (p := before.get(m.idempotency_key)) is not None and p.state is EffectState.SENT
        }
        self._unrecorded.extend(known)
        for m in to_send:
            self._held_until[m.id] = vouched
            task = asyncio.create_task(self._deliver(m, m.idempotency_key in ambiguous, worker))
            in_flight[task] = m.id
        return len(started)

    async def _still_mine(self, message: Message, worker: str) -> bool:
        """Whether this worker still holds ``message``: vouched for locally within half a lease of its
        claim or renewal (the monotonic clock runs on while a process is stopped, so a stall shows), asked
        of the store otherwise (compare-and-set on the token, extending the lease)."""
        if time.monotonic() < self._held_until.get(message.id, 0.0):
            return True
        asked = time.monotonic()
        lease_ms = int(self.lease_s * 1000)
        mine = await self._call(self.store.lease_check, message.id, message.lease_token, worker, lease_ms)
        if mine:
            self._held_until[message.id] = asked + self.lease_s / 2
        return mine

    async def _deliver(self, message: Message, ambiguous: bool, worker: str) -> Outcome:
        # This task's context: the connectors' in-call repeats take their slots from this route's ceiling.
        current_pacer.set(self._bucket)
        # ... and every log line of the connectors it calls carries the message it serves (the hub's
        # logging merges structlog's contextvars; each delivery is a task of its own, with its own copy).
        structlog.contextvars.bind_contextvars(
            route=self.name, key=message.idempotency_key, trace_id=message.trace_id
        )

        async def still_mine() -> None:
            if not await self._still_mine(message, worker):
                raise LeaseLost()

        current_fence.set(still_mine)
        bound = log.bind(route=self.name, key=message.idempotency_key, trace_id=message.trace_id)
        history: list[dict[str, Any]] = []
        try:
            entity = self.entity_types[message.entity_type].model_validate_json(message.payload)
        except (KeyError, ValidationError) as exc:
            return Outcome(
                message, "dead", error_class="permanent", error=describe_error(exc), history=history
            )
        key = message.idempotency_key
        # A target may know that the ledger cannot vouch for this key (an event older than the process: a
        # restored store forgot what it did): it is looked up first, like a delivery in doubt.
        unvouched = getattr(self.target, "unvouched", None)
        if not ambiguous and unvouched is not None and unvouched(entity):
            ambiguous = True
        policy = self.retry
        backoff = wait_exponential_jitter(
            multiplier=policy.initial_backoff_s, max=policy.max_backoff_s, jitter=policy.jitter_s
        )

        store_waits = 0  # attempts the store cut short: they use none of the route's attempts

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, StoreUnavailable):
                return float(min(STORE_RETRY_S[1], STORE_RETRY_S[0] * 2 ** min(store_waits, 4)))
            delay = float(backoff(state))
            if isinstance(exc, DeliveryError) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            return delay

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, StoreUnavailable):
                return True
            if isinstance(exc, DeliveryError):
                if exc.error_class is ErrorClass.PERMANENT:
                    return False
                return not (exc.retry_after and exc.retry_after > policy.max_inline_wait_s)
            return False

        def stop(state: RetryCallState) -> bool:
            return state.attempt_number - store_waits >= max(1, policy.attempts)

        def before_sleep(state: RetryCallState) -> None:
            nonlocal store_waits
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, StoreUnavailable):
                store_waits += 1
                if store_waits == 1:
                    bound.warning(
                        "store unavailable; delivery waits for it", error=describe_error(exc).splitlines()[0]
                    )
                return
            klass = exc.error_class if isinstance(exc, DeliveryError) else ErrorClass.TRANSIENT
            self.metrics.retries.labels(self.name, klass.value).inc()
            if isinstance(exc, DeliveryError) and exc.error_class is ErrorClass.THROTTLED:
                self.pause(wait(state), f"throttled by {self.target.name}: {exc.message}")
            bound.info("retrying", attempt=state.attempt_number, error=describe_error(exc) if exc else None)

        async def attempt() -> str | None:
            try:
                return await target_call()
            except StoreUnavailable:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    # The target's own store calls (cross-references) failed: the hub's outage, not the
                    # target's error. The key is ambiguous, so the next try looks the effect up first.
                    self._store_error(exc)
                    raise StoreUnavailable(describe_error(exc)) from exc
                raise

        async def target_call() -> str | None:
            nonlocal ambiguous
            async with self._sem:
                if ambiguous:
                    if self._bucket is not None:
                        await self._bucket.acquire()
                    found = await self.target.lookup(entity, key)
                    if found is not None:
                        self.metrics.recovered.labels(self.name).inc()
                        bound.info("effect found by lookup; not resent", target_ref=found)
                        return found
                if self._bucket is not None:
                    await self._bucket.acquire()
                # Right before the call: a worker that stalled past its lease, whose message another
                # worker took over, must not deliver it a second time.
                await still_mine()
                started = time.perf_counter()
                try:
                    # Any failure after the request may have left the target leaves the key ambiguous.
                    delivery_in_doubt.set(ambiguous)
                    ambiguous = True
                    return await self.target.deliver(entity, key)
                except DeliveryError as exc:
                    if not is_unavailable(exc):
                        history.append({"at_ms": self.store.clock(), "error": describe_error(exc)})
                    raise
                except (TimeoutError, OSError) as exc:
                    history.append({"at_ms": self.store.clock(), "error": describe_error(exc)})
                    raise TransientError(describe_error(exc)) from exc
                finally:
                    self.metrics.latency.labels(self.name).observe(time.perf_counter() - started)

        def retrying() -> AsyncRetrying:
            return AsyncRetrying(
                stop=stop,
                wait=wait,
                retry=retry_if_exception(retryable),
                before_sleep=before_sleep,
                reraise=True,
            )

        try:
            ref = await first_then(attempt, retrying)
            return Outcome(message, "confirmed", ref, history=history)
        except LeaseLost:
            bound.warning("lease lost to another worker; not delivered", worker=worker)
            return Outcome(message, "superseded")
        except DeliveryError as exc:
            if (
                exc.error_class is not ErrorClass.PERMANENT
                and exc.retry_after
                and exc.retry_after > policy.max_inline_wait_s
            ):
                self.pause(exc.retry_after, f"throttled by {self.target.name}: {exc.message}")
                return Outcome(
                    message, "deferred", error=describe_error(exc), delay_ms=int(exc.retry_after * 1000)
                )
            klass = "permanent" if exc.error_class is ErrorClass.PERMANENT else "exhausted"
            return Outcome(message, "dead", error_class=klass, error=describe_error(exc), history=history)
        except Exception as exc:
            if is_unavailable(exc):  # never the target's fault: due again, no attempt used
                self._store_error(exc)
                return Outcome(message, "released", error=describe_error(exc))
            # A target bug must not kill the route: the message is kept as a dead letter with the reason.
            bound.exception("target raised an unclassified error")
            history.append({"at_ms": self.store.clock(), "error": describe_error(exc)})
            return Outcome(
                message, "dead", error_class="permanent", error=describe_error(exc), history=history
            )

    def _flush(self) -> None:
        """Record the outcomes not recorded yet. Each is dropped from the list once it is written, so a
        store that fails midway leaves exactly the rest to be written when it answers again."""
        if not self._unrecorded:
            return
        confirmed = [o for o in self._unrecorded if o.status == "confirmed"]
        if confirmed:
            written = self.store.complete(
                self.target.name,
                [(o.message.id, o.message.idempotency_key, o.target_ref) for o in confirmed],
                route=self.name,
                tokens={o.message.id: o.message.lease_token for o in confirmed},
            )
            self.metrics.delivered.labels(self.name).inc(len(written))
            if written and self.on_confirmed is not None:
                self.on_confirmed()
            for o in confirmed:
                if o.message.id not in written:
                    self._superseded(o)
            self._unrecorded = [o for o in self._unrecorded if o.status != "confirmed"]
        while self._unrecorded:
            self._record_one(self._unrecorded[0])
            self._unrecorded.pop(0)

    def _superseded(self, o: Outcome) -> None:
        # The effect stays "sent": the worker holding the message now looks it up before sending.
        log.warning(
            "outcome not recorded: another worker holds the message now",
            route=self.name,
            key=o.message.idempotency_key,
            trace_id=o.message.trace_id,
            outcome=o.status,
        )

    def _record_one(self, o: Outcome) -> None:
        m = o.message
        if o.status == "superseded":
            return
        if o.status in {"deferred", "released"}:
            delay = o.delay_ms if o.status == "deferred" else 0
            if not self.store.retry_later(m.id, m.attempts, delay, o.error or "", token=m.lease_token):
                self._superseded(o)
        elif o.status == "dead":
            if self.on_failure is OnFailure.HALT_ROUTE:
                attempts = m.attempts + len(o.history)
                if self.store.retry_later(m.id, attempts, 0, o.error or "", token=m.lease_token):
                    self.halt(f"message {m.id} ({m.idempotency_key}) failed: {o.error}")
                else:
                    self._superseded(o)
                return
            if (
                self.store.dead_letter_message(m, o.error_class or "permanent", o.error or "", o.history)
                is None
            ):
                self._superseded(o)
                return
            self.metrics.dead_letters.labels(self.name, "delivery").inc()
            log.error(
                "message dead-lettered",
                route=self.name,
                key=o.message.idempotency_key,
                trace_id=o.message.trace_id,
                error_class=o.error_class,
                reason=o.error,
            )

    @property
    def unrecorded(self) -> int:
        """Outcomes waiting for the store to take them."""
        return len(self._unrecorded)

    def pending(self) -> int:
        return self.store.count_messages(self.name, "pending")
