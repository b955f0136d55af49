"""The state store: inbox/outbox messages, the effect ledger, checkpoints, cross-references, dead letters.

One schema on SQLite (WAL, the embedded default) and PostgreSQL (several hub workers). Workers claim
messages with a lease; on PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so two workers never hold the
same message, and a worker that dies loses its lease when it expires.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from lead2cash.store.schema import (
    checkpoint_history,
    checkpoints,
    dead_letters,
    effects,
    inbound_receipts,
    instances,
    messages,
    route_state,
    sequences,
    source_leases,
    xrefs,
)

MIGRATIONS = Path(__file__).parent / "migrations"
XREF_CACHE_SIZE = 100_000  # stable cross-references remembered per process

# Lookups on the hot path are built once: building the clauses costs more than running the query.
_XREF_GET = select(xrefs.c.system_id).where(
    xrefs.c.entity_type == bindparam("entity_type"),
    xrefs.c.canonical_id == bindparam("canonical_id"),
    xrefs.c.system == bindparam("system"),
)
_XREF_GET_MANY = select(xrefs.c.canonical_id, xrefs.c.system_id).where(
    xrefs.c.entity_type == bindparam("entity_type"),
    xrefs.c.system == bindparam("system"),
    xrefs.c.canonical_id.in_(bindparam("ids", expanding=True)),
)

_RECEIPT_SEEN = select(inbound_receipts.c.unique_key).where(
    inbound_receipts.c.sender == bindparam("sender"),
    inbound_receipts.c.unique_key == bindparam("unique_key"),
)


class XrefWrite(NamedTuple):
    """A cross-reference a source writes in the same transaction as the records it passes on."""

    entity_type: str
    canonical_id: str
    system: str
    system_id: str


# ``checkpoint_from`` of ``Store.enqueue`` when the checkpoint is written whatever it was.
UNCHECKED: Any = object()


def now_ms() -> int:
    return int(time.time() * 1000)


def is_unavailable(exc: BaseException | None) -> bool:
    """The store could not be reached or could not write (a server restart, a dropped connection, a full
    disk, a lock held too long): an outage to wait out, never a fault of the message or of its target. The
    cause chain is searched, so a target that wrapped a store error is not blamed for it either."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OperationalError | DisconnectionError | InterfaceError | PoolTimeoutError):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        if type(exc).__module__.split(".")[0] in {"sqlite3", "psycopg"} and type(exc).__name__ in {
            "OperationalError",
            "InterfaceError",
        }:
            return True  # a driver error raised outside SQLAlchemy
        exc = exc.__cause__ or exc.__context__
    return False


class EffectState(StrEnum):
    RESERVED = "reserved"
    SENT = "sent"
    CONFIRMED = "confirmed"


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class NewMessage:
    idempotency_key: str
    entity_type: str
    payload: str
    trace_id: str
    source_payload: str | None = None
    ordering_key: str | None = None


@dataclass(frozen=True)
class Message:
    id: int
    route: str
    idempotency_key: str
    ordering_key: str | None
    entity_type: str
    payload: str
    source_payload: str | None
    status: str
    attempts: int
    last_error: str | None
    target_ref: str | None
    trace_id: str
    confirmed_seq: int | None = None  # the route's confirmation number, once delivered
    lease_token: int = 0  # the fencing token of the claim that returned it


@dataclass(frozen=True)
class NewDeadLetter:
    """A source record that could not become a message (it failed filtering or mapping)."""

    original_payload: str
    error_message: str
    trace_id: str
    error_class: str = "invalid"


@dataclass(frozen=True)
class DeadLetter:
    id: int
    route: str
    message_id: int | None
    idempotency_key: str | None
    stage: str
    original_payload: str
    canonical_payload: str | None
    error_class: str
    error_message: str
    attempts: list[dict[str, Any]]
    status: str
    trace_id: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True)
class Effect:
    state: EffectState
    target_ref: str | None


@dataclass(frozen=True)
class Instance:
    """A process delivering from the store, alive while its heartbeat has not expired."""

    instance: str
    worker_id: str
    role: str  # hub | operator
    host: str
    pid: int
    started_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class RouteState:
    route: str
    status: str
    paused_until_ms: int | None
    reason: str | None


def _message(row: Any) -> Message:
    return Message(
        id=row.id,
        route=row.route,
        idempotency_key=row.idempotency_key,
        ordering_key=row.ordering_key,
        entity_type=row.entity_type,
        payload=row.payload,
        source_payload=row.source_payload,
        status=row.status,
        attempts=row.attempts,
        last_error=row.last_error,
        target_ref=row.target_ref,
        trace_id=row.trace_id,
        confirmed_seq=row.confirmed_seq,
        lease_token=row.lease_token,
    )


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        route=row.route,
        message_id=row.message_id,
        idempotency_key=row.idempotency_key,
        stage=row.stage,
        original_payload=row.original_payload,
        canonical_payload=row.canonical_payload,
        error_class=row.error_class,
        error_message=row.error_message,
        attempts=json.loads(row.attempts),
        status=row.status,
        trace_id=row.trace_id,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def normalise_url(url: str) -> str:
    """Accept ``sqlite:///path`` / a bare file path / ``postgresql://`` and pick the drivers we ship."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE: a deferred BEGIN that later upgrades to a
        # write lock fails at once with SQLITE_BUSY when another process writes.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads (``Store._read``: one statement each) begin nothing: the driver runs in autocommit, so the
        # statement is its own snapshot in WAL mode, takes no write lock and never waits for (or blocks) a
        # writer, as on PostgreSQL; a BEGIN and a ROLLBACK around it were two more statements per read.
        if conn.get_execution_options().get("lead2cash_read"):
            return
        sql = "BEGIN IMMEDIATE"
        # On the driver's connection: through ``exec_driver_sql`` the statement paid SQLAlchemy's whole
        # execution path (events, result setup) on every transaction. Its errors are wrapped as that path
        # wraps them (``database is locked`` an OperationalError), so callers see the same exceptions.
        try:
            conn.connection.driver_connection.execute(sql)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc

    return engine


PG_IDLE_PING_S = 10.0


def _postgresql_engine(url: str) -> Engine:
    # A server that does not answer must not hold the event loop for the OS's TCP timeout.
    engine = create_engine(url, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5})

    # A pooled connection is pinged only when it sat idle: under load connections come back within
    # milliseconds, and a ping on every checkout (pool_pre_ping) was a round trip per store call. A
    # connection the server dropped meanwhile (a restart, an idle timeout) fails the ping and the pool
    # replaces it; the caller never sees it.
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PG_IDLE_PING_S:
            return
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError("pooled PostgreSQL connection is gone") from exc

    return engine


class Store:
    def __init__(self, url: str, *, clock: Callable[[], int] = now_ms, migrate: bool = True) -> None:
        self.url = normalise_url(url)
        self.clock = clock
        self.is_sqlite = self.url.startswith("sqlite")
        self._xrefs: dict[tuple[str, str, str], str] = {}
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = _postgresql_engine(self.url)
        if migrate:
            self.migrate()
        # Writes on the hot path, built once per dialect.
        self._receipt_insert: Any = (
            self._insert(inbound_receipts).on_conflict_do_nothing().returning(inbound_receipts.c.unique_key)
        )
        self._message_insert: Any = self._insert(messages).on_conflict_do_nothing(
            index_elements=["route", "idempotency_key"]
        )
        take = self._insert(sequences).values(name=bindparam("name"), value=bindparam("n"))
        self._sequence_take: Any = take.on_conflict_do_update(
            index_elements=["name"], set_={"value": sequences.c.value + take.excluded.value}
        ).returning(sequences.c.value)
        upsert = self._insert(xrefs)
        self._xref_upsert_stmt: Any = upsert.on_conflict_do_update(
            index_elements=["entity_type", "canonical_id", "system"],
            set_={"system_id": upsert.excluded.system_id, "updated_at_ms": upsert.excluded.updated_at_ms},
        )

    @property
    def backend(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @property
    def offload(self) -> bool:
        """Whether a caller on an event loop runs store calls in a thread: a PostgreSQL call waits for a
        network round trip, which would hold every other delivery of the process; a SQLite call is a few
        microseconds of local work that a thread hand-off would only slow down."""
        return not self.is_sqlite

    def migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Serialise concurrent first starts of several workers on one database.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4202424242)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    def _read(self) -> Connection:
        """A connection for one read statement. It runs in autocommit (on SQLite the begin event skips
        BEGIN): the statement is its own snapshot, and BEGIN and ROLLBACK would be two more round trips."""
        if self.is_sqlite:
            return self.engine.connect().execution_options(lead2cash_read=True)
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _insert(self, table: Any) -> Any:
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    # ------------------------------------------------------------------ inbox / outbox
    def enqueue(
        self,
        route: str,
        new: Sequence[NewMessage],
        *,
        checkpoint: tuple[str, str] | None = None,
        dead: Sequence[NewDeadLetter] = (),
        reason: str = "source advanced",
        receipt: tuple[str, str] | None = None,
        xrefs_written: Sequence[XrefWrite] = (),
        checkpoint_from: str | None = UNCHECKED,
        source_fence: tuple[str, str, int] | None = None,
    ) -> bool:
        """Write a batch from a source and advance its checkpoint in the same transaction.

        A message whose (route, idempotency key) is already known is ignored: the idempotent consumer.
        With ``receipt`` (sender, unique delivery key) the batch is written only if that delivery was never
        seen, atomically with remembering it: False means a duplicate delivery, nothing written.
        ``xrefs_written`` (a source's own state, e.g. what it has passed on) commit with the batch.
        With ``checkpoint_from`` (the value the read started from) the checkpoint moves only if it still
        has that value: one somebody set meanwhile (``lead2cash checkpoint set``) is not overwritten.
        With ``source_fence`` (source, owner, token of its source lease) the batch is written only while
        that lease is still the source's: a poller that stalled while another took the source over must
        not pass on what it read before (an older state of records the new poller has passed on since).
        False: nothing written.
        """
        ts = self.clock()
        with self.engine.begin() as conn:
            if source_fence is not None:
                q = select(source_leases.c.owner, source_leases.c.token).where(
                    source_leases.c.source == source_fence[0]
                )
                if not self.is_sqlite:
                    q = q.with_for_update()  # held to commit: no takeover between check and write
                row = conn.execute(q).first()
                if row is None or (row.owner, row.token) != source_fence[1:]:
                    return False
            if receipt is not None:
                seen = conn.execute(
                    self._receipt_insert,
                    {"sender": receipt[0], "unique_key": receipt[1], "received_at_ms": ts},
                ).first()
                if seen is None:
                    return False
            if new:
                rows = [
                    {
                        "route": route,
                        "idempotency_key": m.idempotency_key,
                        "ordering_key": m.ordering_key,
                        "entity_type": m.entity_type,
                        "payload": m.payload,
                        "source_payload": m.source_payload,
                        "status": MessageStatus.PENDING.value,
                        "attempts": 0,
                        "next_attempt_at_ms": ts,
                        "trace_id": m.trace_id,
                        "created_at_ms": ts,
                        "updated_at_ms": ts,
                    }
                    for m in new
                ]
                conn.execute(self._message_insert, rows)
            for d in dead:
                conn.execute(
                    insert(dead_letters).values(
                        route=route,
                        stage="mapping",
                        original_payload=d.original_payload,
                        error_class=d.error_class,
                        error_message=d.error_message,
                        attempts="[]",
                        status="open",
                        trace_id=d.trace_id,
                        created_at_ms=ts,
                        updated_at_ms=ts,
                    )
                )
            self._xref_upsert(conn, xrefs_written, ts)
            if checkpoint is not None:
                self._checkpoint_set(conn, checkpoint[0], checkpoint[1], reason, ts, checkpoint_from)
        return True

    def claim(self, route: str, worker: str, limit: int, lease_ms: int) -> list[Message]:
        """Lease up to ``limit`` due messages of ``route``; never one whose ordering key has an earlier
        pending message, so per-key order holds across workers."""
        ts = self.clock()
        earlier = messages.alias("earlier")
        due = (
            select(messages.c.id)
            .where(
                messages.c.route == route,
                messages.c.status == MessageStatus.PENDING.value,
                messages.c.next_attempt_at_ms <= ts,
                or_(messages.c.lease_expires_at_ms.is_(None), messages.c.lease_expires_at_ms < ts),
                # Unordered messages skip the check outright; for the others it is an index probe on
                # ix_messages_ordering (an anti-join over NULL keys would compare every pair).
                or_(
                    messages.c.ordering_key.is_(None),
                    ~exists().where(
                        earlier.c.route == messages.c.route,
                        earlier.c.ordering_key == messages.c.ordering_key,
                        earlier.c.status == MessageStatus.PENDING.value,
                        earlier.c.id < messages.c.id,
                    ),
                ),
            )
            .order_by(messages.c.id)
            .limit(limit)
        )
        if not self.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(messages)
            .where(messages.c.id.in_(due.scalar_subquery()))
            .values(
                lease_owner=worker,
                lease_expires_at_ms=ts + lease_ms,
                lease_token=messages.c.lease_token + 1,
                updated_at_ms=ts,
            )
            .returning(*messages.c)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
        return sorted((_message(r) for r in rows), key=lambda m: m.id)

    def renew_leases(self, message_ids: Iterable[int], worker: str, lease_ms: int) -> int:
        """Extend the leases ``worker`` holds on messages it is still delivering; returns how many."""
        ids = list(message_ids)
        if not ids:
            return 0
        ts = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids), messages.c.lease_owner == worker)
                .values(lease_expires_at_ms=ts + lease_ms)
            )
        return int(result.rowcount or 0)

    def lease_check(self, message_id: int, token: int, worker: str, lease_ms: int) -> bool:
        """Whether ``worker`` still holds message ``message_id`` under ``token`` (nobody claimed it since);
        if so its lease is extended by ``lease_ms`` in the same statement, so the call that follows has a
        whole lease. Compare-and-set: a worker that stalled past its lease and lost the message gets False."""
        ts = self.clock()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(messages)
                .where(
                    messages.c.id == message_id,
                    messages.c.lease_token == token,
                    messages.c.lease_owner == worker,
                    messages.c.status == MessageStatus.PENDING.value,
                )
                .values(lease_expires_at_ms=ts + lease_ms)
            )
        return bool(result.rowcount)

    def _held(self, conn: Connection, tokens: Mapping[int, int]) -> set[int]:
        """The messages of ``tokens`` (id -> fencing token) that still carry that token, row-locked on
        PostgreSQL to the end of the transaction so no claim takes them meanwhile."""
        q = select(messages.c.id, messages.c.lease_token).where(messages.c.id.in_(list(tokens)))
        if not self.is_sqlite:
            q = q.with_for_update()
        return {r.id for r in conn.execute(q) if r.lease_token == tokens[r.id]}

    def release(self, message_ids: Iterable[int], worker: str) -> None:
        ids = list(message_ids)
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids), messages.c.lease_owner == worker)
                .values(lease_owner=None, lease_expires_at_ms=None)
            )

    def release_leases(self, worker: str | None = None, *, keep_owners: Iterable[str] = ()) -> int:
        """Free leases held by ``worker`` (every owner's when None: a single embedded hub restarting),
        never those of ``keep_owners`` (live processes: their deliveries are in flight)."""
        stmt = update(messages).where(messages.c.lease_owner.is_not(None))
        if worker is not None:
            stmt = stmt.where(messages.c.lease_owner == worker)
        keep = sorted(set(keep_owners))
        if keep:
            stmt = stmt.where(messages.c.lease_owner.not_in(keep))
        with self.engine.begin() as conn:
            return int(conn.execute(stmt.values(lease_owner=None, lease_expires_at_ms=None)).rowcount)

    def release_unstarted(self, route: str, worker: str, in_flight: Iterable[int]) -> int:
        """Free ``worker``'s leases on messages of ``route`` it is not delivering: claims whose commit a
        store outage left in doubt, so they are not held for a whole lease."""
        stmt = update(messages).where(
            messages.c.route == route,
            messages.c.lease_owner == worker,
            messages.c.status == MessageStatus.PENDING.value,
        )
        busy = list(in_flight)
        if busy:
            stmt = stmt.where(messages.c.id.not_in(busy))
        with self.engine.begin() as conn:
            return int(conn.execute(stmt.values(lease_owner=None, lease_expires_at_ms=None)).rowcount)

    # ------------------------------------------------------------------ source leases
    def source_lease(self, source: str, owner: str, ttl_ms: int) -> int | None:
        """Take or keep the lease on polling ``source``: its token when ``owner`` holds it now (it held it,
        or it was free or expired), None while another owner's lease runs. One statement, so two workers
        racing for a free source cannot both win."""
        ts = self.clock()
        stmt = self._insert(source_leases).values(
            source=source, owner=owner, token=1, expires_at_ms=ts + ttl_ms
        )
        changed = source_leases.c.owner != owner
        stmt = stmt.on_conflict_do_update(
            index_elements=["source"],
            set_={
                "owner": owner,
                "expires_at_ms": ts + ttl_ms,
                "token": case((changed, source_leases.c.token + 1), else_=source_leases.c.token),
            },
            where=or_(source_leases.c.owner == owner, source_leases.c.expires_at_ms < ts),
        ).returning(source_leases.c.token)
        with self.engine.begin() as conn:
            token = conn.execute(stmt).scalar()
        return int(token) if token is not None else None

    def source_lease_release(self, owner: str) -> None:
        """Give up ``owner``'s source leases (a stopping hub): another worker polls at once."""
        with self.engine.begin() as conn:
            conn.execute(delete(source_leases).where(source_leases.c.owner == owner))

    def source_leases_release_orphans(self, keep_owners: set[str]) -> int:
        """Release the source leases of every owner but ``keep_owners`` (the live processes): after a
        crash on a one-process store, the restarted hub polls at once instead of waiting the lease out."""
        stmt = delete(source_leases)
        if keep_owners:
            stmt = stmt.where(source_leases.c.owner.not_in(keep_owners))
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def source_lease_holders(self) -> dict[str, str]:
        """Who polls each source now (unexpired leases)."""
        q = select(source_leases.c.source, source_leases.c.owner).where(
            source_leases.c.expires_at_ms >= self.clock()
        )
        with self._read() as conn:
            return {r.source: r.owner for r in conn.execute(q)}

    # ------------------------------------------------------------------ live instances
    def instance_beat(self, who: Instance) -> None:
        """Register or renew a delivering process (``expires_at_ms`` is when it counts as gone). A write:
        it also tells whether the store can write at all (a full disk fails it)."""
        values = {"expires_at_ms": who.expires_at_ms}
        stmt = self._insert(instances).values(**who.__dict__)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["instance"], set_=values))

    def instance_remove(self, instance: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(instances).where(instances.c.instance == instance))

    def instances_live(self) -> list[Instance]:
        """Processes whose heartbeat has not expired."""
        ts = self.clock()
        with self._read() as conn:
            rows = conn.execute(select(instances).where(instances.c.expires_at_ms >= ts)).all()
        return [Instance(**r._mapping) for r in rows]

    def instances_expire(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(instances).where(instances.c.expires_at_ms < self.clock()))

    def get_message(self, message_id: int) -> Message | None:
        with self._read() as conn:
            row = conn.execute(select(messages).where(messages.c.id == message_id)).first()
        return _message(row) if row else None

    def message_by_key(self, route: str, key: str) -> Message | None:
        q = select(messages).where(messages.c.route == route, messages.c.idempotency_key == key)
        with self._read() as conn:
            row = conn.execute(q).first()
        return _message(row) if row else None

    def messages_for(self, route: str, status: str | None = None) -> list[Message]:
        q = select(messages).where(messages.c.route == route)
        if status:
            q = q.where(messages.c.status == status)
        with self._read() as conn:
            return [_message(r) for r in conn.execute(q.order_by(messages.c.id))]

    def delivered_since(self, route: str, after_seq: int, limit: int) -> list[Message]:
        """Delivered messages of ``route`` confirmed after number ``after_seq``, in confirmation order.
        Numbers are given in commit order, so a reader that checkpoints on the last one returned never
        skips a message, however late it is delivered (a retry, a replayed dead letter)."""
        q = (
            select(messages)
            .where(
                messages.c.route == route,
                messages.c.confirmed_seq > after_seq,
                messages.c.status == MessageStatus.DELIVERED.value,
            )
            .order_by(messages.c.confirmed_seq)
            .limit(limit)
        )
        with self._read() as conn:
            return [_message(r) for r in conn.execute(q)]

    def count_messages(self, route: str | None = None, status: str | None = None) -> int:
        q = select(func.count()).select_from(messages)
        if route:
            q = q.where(messages.c.route == route)
        if status:
            q = q.where(messages.c.status == status)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def next_due_ms(self, route: str) -> int | None:
        """When the earliest pending message of ``route`` is due (None when nothing is pending). One leased
        by a worker is due when its lease runs out, not before: another worker waits for that, it does not
        spin on a message it cannot claim."""
        due = case(
            (
                messages.c.lease_expires_at_ms > messages.c.next_attempt_at_ms,
                messages.c.lease_expires_at_ms,
            ),
            else_=messages.c.next_attempt_at_ms,
        )
        q = select(func.min(due)).where(
            messages.c.route == route, messages.c.status == MessageStatus.PENDING.value
        )
        with self._read() as conn:
            value = conn.execute(q).scalar_one()
        return int(value) if value is not None else None

    # ------------------------------------------------------------------ effect ledger
    def effects_reserve(self, target: str, route: str, items: Sequence[tuple[str, int]]) -> dict[str, Effect]:
        """Reserve (target, key) for each item; return the state each key had before (absent = new)."""
        if not items:
            return {}
        ts = self.clock()
        keys = [k for k, _ in items]
        with self.engine.begin() as conn:
            existing = {
                r.idempotency_key: Effect(EffectState(r.state), r.target_ref)
                for r in conn.execute(
                    select(effects.c.idempotency_key, effects.c.state, effects.c.target_ref).where(
                        effects.c.target == target, effects.c.idempotency_key.in_(keys)
                    )
                )
            }
            fresh = [
                {
                    "target": target,
                    "idempotency_key": k,
                    "state": EffectState.RESERVED.value,
                    "route": route,
                    "message_id": mid,
                    "updated_at_ms": ts,
                }
                for k, mid in items
                if k not in existing
            ]
            if fresh:
                conn.execute(self._insert(effects).on_conflict_do_nothing(), fresh)
        return existing

    def effects_mark(self, target: str, keys: Sequence[str], state: EffectState) -> None:
        if not keys:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(effects)
                .where(
                    effects.c.target == target,
                    effects.c.idempotency_key.in_(list(keys)),
                    effects.c.state != EffectState.CONFIRMED.value,
                )
                .values(state=state.value, updated_at_ms=self.clock())
            )

    def effects_start(
        self, target: str, route: str, claimed: Sequence[Message]
    ) -> tuple[dict[str, Effect], set[int]]:
        """The ledger step before delivery, in one transaction and fenced: for each claimed message still
        held under its token, the effect's state before (absent = new) is returned and the effect becomes
        sent (unless confirmed). Returns (states before, ids of the messages still held); a message another
        worker claimed since is left alone and must not be delivered."""
        if not claimed:
            return {}, set()
        ts = self.clock()
        with self.engine.begin() as conn:
            held = self._held(conn, {m.id: m.lease_token for m in claimed})
            mine = [m for m in claimed if m.id in held]
            if not mine:
                return {}, held
            keys = [m.idempotency_key for m in mine]
            existing = {
                r.idempotency_key: Effect(EffectState(r.state), r.target_ref)
                for r in conn.execute(
                    select(effects.c.idempotency_key, effects.c.state, effects.c.target_ref).where(
                        effects.c.target == target, effects.c.idempotency_key.in_(keys)
                    )
                )
            }
            fresh = [
                {
                    "target": target,
                    "idempotency_key": m.idempotency_key,
                    "state": EffectState.SENT.value,
                    "route": route,
                    "message_id": m.id,
                    "updated_at_ms": ts,
                }
                for m in mine
                if m.idempotency_key not in existing
            ]
            if fresh:
                conn.execute(self._insert(effects).on_conflict_do_nothing(), fresh)
            again = [k for k, e in existing.items() if e.state is not EffectState.CONFIRMED]
            if again:
                conn.execute(
                    update(effects)
                    .where(
                        effects.c.target == target,
                        effects.c.idempotency_key.in_(again),
                        effects.c.state != EffectState.CONFIRMED.value,
                    )
                    .values(state=EffectState.SENT.value, updated_at_ms=ts)
                )
        return existing, held

    def effect_get(self, target: str, key: str) -> Effect | None:
        with self._read() as conn:
            row = conn.execute(
                select(effects.c.state, effects.c.target_ref).where(
                    effects.c.target == target, effects.c.idempotency_key == key
                )
            ).first()
        return Effect(EffectState(row.state), row.target_ref) if row else None

    def effects_in_state(self, state: EffectState, target: str | None = None) -> int:
        q = select(func.count()).select_from(effects).where(effects.c.state == state.value)
        if target:
            q = q.where(effects.c.target == target)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def complete(
        self,
        target: str,
        done: Sequence[tuple[int, str, str | None]],
        *,
        route: str | None = None,
        tokens: Mapping[int, int] | None = None,
    ) -> set[int]:
        """Confirm effects and mark their messages delivered, atomically: (message_id, key, target_ref).
        Each message gets its route's next confirmation number (``route``: the messages' route, read
        from the first one when not given). With ``tokens`` (message id -> fencing token) only messages
        still held under their token are written: the ids written are returned. The effect of one that
        was not stays sent, so whoever holds it now looks the effect up before sending again."""
        if not done:
            return set()
        ts = self.clock()
        with self.engine.begin() as conn:
            if route is None:
                route = conn.execute(select(messages.c.route).where(messages.c.id == done[0][0])).scalar_one()
            # First in the transaction: the counter's row lock, held to commit, orders the numbers as
            # the commits, and every completion takes it before any other lock.
            last = conn.execute(
                self._sequence_take, {"name": f"confirmed:{route}", "n": len(done)}
            ).scalar_one()
            first = int(last) - len(done) + 1
            if tokens is not None:
                # After the counter (its lock comes first in every completion); a number left unused is a
                # gap, which readers of confirmations never wait for.
                held = self._held(conn, tokens)
                done = [d for d in done if d[0] in held]
                if not done:
                    return set()
            conn.execute(
                update(effects)
                .where(
                    effects.c.target == target,
                    effects.c.idempotency_key == _bind("b_key"),
                )
                .values(state=EffectState.CONFIRMED.value, target_ref=_bind("b_ref"), updated_at_ms=ts),
                [{"b_key": k, "b_ref": ref} for _, k, ref in done],
            )
            conn.execute(
                update(messages)
                .where(messages.c.id == _bind("b_id"))
                .values(
                    status=MessageStatus.DELIVERED.value,
                    target_ref=_bind("b_ref"),
                    lease_owner=None,
                    lease_expires_at_ms=None,
                    updated_at_ms=ts,
                    # A message confirmed twice (a lease ran out meanwhile) keeps its first number.
                    confirmed_seq=func.coalesce(messages.c.confirmed_seq, _bind("b_seq")),
                ),
                [{"b_id": mid, "b_ref": ref, "b_seq": first + i} for i, (mid, _, ref) in enumerate(done)],
            )
        return {mid for mid, _, _ in done}

    def retry_later(
        self, message_id: int, attempts: int, delay_ms: int, error: str, *, token: int | None = None
    ) -> bool:
        """Make a message due again after ``delay_ms``; with ``token`` only while it carries that fencing
        token (False: another worker claimed it since, nothing written)."""
        ts = self.clock()
        stmt = update(messages).where(messages.c.id == message_id)
        if token is not None:
            stmt = stmt.where(messages.c.lease_token == token)
        with self.engine.begin() as conn:
            result = conn.execute(
                stmt.values(
                    attempts=attempts,
                    next_attempt_at_ms=ts + delay_ms,
                    last_error=error,
                    lease_owner=None,
                    lease_expires_at_ms=None,
                    updated_at_ms=ts,
                )
            )
        return bool(result.rowcount)

    def dead_letter_message(
        self, message: Message, error_class: str, error_message: str, history: list[dict[str, Any]]
    ) -> int | None:
        """Move a message to the dead letters, fenced: only while it carries the token ``message`` was
        claimed with (None: another worker claimed it since, nothing written)."""
        ts = self.clock()
        with self.engine.begin() as conn:
            marked = conn.execute(
                update(messages)
                .where(messages.c.id == message.id, messages.c.lease_token == message.lease_token)
                .values(
                    status=MessageStatus.DEAD.value,
                    attempts=len(history),
                    last_error=error_message,
                    lease_owner=None,
                    lease_expires_at_ms=None,
                    updated_at_ms=ts,
                )
            )
            if not marked.rowcount:
                return None
            result = conn.execute(
                insert(dead_letters).values(
                    route=message.route,
                    message_id=message.id,
                    idempotency_key=message.idempotency_key,
                    stage="delivery",
                    original_payload=message.source_payload or message.payload,
                    canonical_payload=message.payload,
                    error_class=error_class,
                    error_message=error_message,
                    attempts=json.dumps(history),
                    status="open",
                    trace_id=message.trace_id,
                    created_at_ms=ts,
                    updated_at_ms=ts,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    # ------------------------------------------------------------------ dead letters
    def dlq_list(
        self, route: str | None = None, status: str | None = "open", limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters of ``route`` (any route: None) with ``status`` (any status: None or ``"all"``, as the
        CLI and the admin API spell it)."""
        q = select(dead_letters)
        if route:
            q = q.where(dead_letters.c.route == route)
        if status and status != "all":
            q = q.where(dead_letters.c.status == status)
        with self._read() as conn:
            return [_dead_letter(r) for r in conn.execute(q.order_by(dead_letters.c.id).limit(limit))]

    def dlq_count(self, route: str | None = None, status: str | None = "open") -> int:
        q = select(func.count()).select_from(dead_letters)
        if route:
            q = q.where(dead_letters.c.route == route)
        if status and status != "all":
            q = q.where(dead_letters.c.status == status)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def dlq_get(self, dead_letter_id: int) -> DeadLetter | None:
        with self._read() as conn:
            row = conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)).first()
        return _dead_letter(row) if row else None

    def dlq_requeue(self, dead_letter_id: int) -> DeadLetter:
        """Replay a delivery-stage dead letter: its message becomes pending again with a fresh attempt count.
        The effect ledger still guards the target, so a replay never duplicates a confirmed effect."""
        ts = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)).first()
            if row is None:
                raise KeyError(f"no dead letter {dead_letter_id}")
            if row.status != "open":
                raise ValueError(f"dead letter {dead_letter_id} is {row.status}, not open")
            if row.stage != "delivery" or row.message_id is None:
                raise ValueError(
                    f"dead letter {dead_letter_id} failed at {row.stage}; replay it through its route"
                )
            conn.execute(
                update(messages)
                .where(messages.c.id == row.message_id)
                .values(
                    status=MessageStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at_ms=ts,
                    lease_owner=None,
                    lease_expires_at_ms=None,
                    updated_at_ms=ts,
                )
            )
            self._dlq_set_status(conn, dead_letter_id, "replayed", ts)
        return _dead_letter(row)

    def dlq_mark(self, dead_letter_id: int, status: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                select(dead_letters.c.status).where(dead_letters.c.id == dead_letter_id)
            ).first()
            if row is None:
                raise KeyError(f"no dead letter {dead_letter_id}")
            if row.status != "open":
                raise ValueError(f"dead letter {dead_letter_id} is {row.status}, not open")
            self._dlq_set_status(conn, dead_letter_id, status, self.clock())
            if status == "discarded":
                mid = conn.execute(
                    select(dead_letters.c.message_id).where(dead_letters.c.id == dead_letter_id)
                ).scalar_one()
                if mid is not None:
                    conn.execute(
                        update(messages)
                        .where(messages.c.id == mid)
                        .values(status=MessageStatus.DISCARDED.value)
                    )

    @staticmethod
    def _dlq_set_status(conn: Connection, dead_letter_id: int, status: str, ts: int) -> None:
        conn.execute(
            update(dead_letters)
            .where(dead_letters.c.id == dead_letter_id)
            .values(status=status, updated_at_ms=ts)
        )

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_get(self, source: str) -> str | None:
        with self._read() as conn:
            value = conn.execute(select(checkpoints.c.value).where(checkpoints.c.source == source)).scalar()
        return str(value) if value is not None else None

    def checkpoint_set(self, source: str, value: str, reason: str) -> None:
        with self.engine.begin() as conn:
            self._checkpoint_set(conn, source, value, reason, self.clock())

    def _checkpoint_set(
        self,
        conn: Connection,
        source: str,
        value: str,
        reason: str,
        ts: int,
        expected: str | None = UNCHECKED,
    ) -> None:
        previous = conn.execute(select(checkpoints.c.value).where(checkpoints.c.source == source)).scalar()
        if previous == value or (expected is not UNCHECKED and previous != expected):
            return
        stmt = self._insert(checkpoints).values(source=source, value=value, updated_at_ms=ts)
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["source"], set_={"value": value, "updated_at_ms": ts})
        )
        conn.execute(
            insert(checkpoint_history).values(
                source=source, value=value, previous=previous, reason=reason, changed_at_ms=ts
            )
        )

    def checkpoint_history(self, source: str, limit: int = 20) -> list[dict[str, Any]]:
        q = (
            select(checkpoint_history)
            .where(checkpoint_history.c.source == source)
            .order_by(checkpoint_history.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def checkpoints_all(self) -> dict[str, str]:
        with self._read() as conn:
            return {r.source: r.value for r in conn.execute(select(checkpoints))}

    # ------------------------------------------------------------------ cross-references
    def xref_put(
        self, entity_type: str, canonical_id: str, system: str, system_id: str, *, stable: bool = False
    ) -> None:
        """Map a canonical id to a system's id. ``stable``: a mapping that never changes once made (a
        customer's partner number, an invoice's document), remembered in this process so a repeated put
        of the same value writes nothing and a get is answered from memory."""
        self.xref_put_many(
            [XrefWrite(entity_type, canonical_id, system, system_id)], stable=lambda _w: stable
        )

    def xref_put_many(
        self, writes: Sequence[XrefWrite], *, stable: Callable[[XrefWrite], bool] = lambda _w: False
    ) -> None:
        """Several cross-references in one transaction; ``stable`` as for ``xref_put``, per write."""
        todo: list[tuple[XrefWrite, bool]] = []
        for w in writes:
            is_stable = stable(w)
            if is_stable and self._xrefs.get((w.entity_type, w.canonical_id, w.system)) == w.system_id:
                continue
            todo.append((w, is_stable))
        if not todo:
            return
        ts = self.clock()
        with self.engine.begin() as conn:
            self._xref_upsert(conn, [w for w, _ in todo], ts)
        for w, is_stable in todo:
            key = (w.entity_type, w.canonical_id, w.system)
            if is_stable:
                self._remember_xref(key, w.system_id)
            else:
                self._xrefs.pop(key, None)

    def _xref_upsert(self, conn: Connection, writes: Sequence[XrefWrite], ts: int) -> None:
        # One statement for the batch (executemany), built in __init__. The last write of a key
        # wins, and a key appears once (PostgreSQL refuses to update one row twice in one statement).
        latest = {(w.entity_type, w.canonical_id, w.system): w for w in writes}
        if not latest:
            return
        conn.execute(
            self._xref_upsert_stmt,
            [
                {
                    "entity_type": w.entity_type,
                    "canonical_id": w.canonical_id,
                    "system": w.system,
                    "system_id": w.system_id,
                    "updated_at_ms": ts,
                }
                for w in latest.values()
            ],
        )

    def xref_get(
        self, entity_type: str, canonical_id: str, system: str, *, stable: bool = False
    ) -> str | None:
        cache_key = (entity_type, canonical_id, system)
        if stable and (known := self._xrefs.get(cache_key)) is not None:
            return known
        params = {"entity_type": entity_type, "canonical_id": canonical_id, "system": system}
        with self._read() as conn:
            value = conn.execute(_XREF_GET, params).scalar()
        if value is None:
            return None  # never cached: another worker may map it any moment
        if stable:
            self._remember_xref(cache_key, str(value))
        return str(value)

    def _remember_xref(self, cache_key: tuple[str, str, str], value: str) -> None:
        if len(self._xrefs) >= XREF_CACHE_SIZE:
            self._xrefs.clear()
        self._xrefs[cache_key] = value

    def xref_get_many(self, entity_type: str, system: str, canonical_ids: Sequence[str]) -> dict[str, str]:
        """The system ids of many canonical ids at once (absent ones are left out)."""
        found: dict[str, str] = {}
        ids = list(dict.fromkeys(canonical_ids))
        with self._read() as conn:
            for start in range(0, len(ids), 500):  # under SQLite's bound-parameter ceiling
                params = {"entity_type": entity_type, "system": system, "ids": ids[start : start + 500]}
                found.update({str(c): str(v) for c, v in conn.execute(_XREF_GET_MANY, params)})
        return found

    def xref_find(self, entity_type: str, system: str, system_id: str) -> str | None:
        q = select(xrefs.c.canonical_id).where(
            xrefs.c.entity_type == entity_type, xrefs.c.system == system, xrefs.c.system_id == system_id
        )
        with self._read() as conn:
            value = conn.execute(q).scalar()
        return str(value) if value is not None else None

    # ------------------------------------------------------------------ inbound receipts (webhook dedupe)
    def receipt_add(self, sender: str, unique_key: str) -> bool:
        """Remember a sender's unique delivery key; False when it was seen before (a duplicate)."""
        row = {"sender": sender, "unique_key": unique_key, "received_at_ms": self.clock()}
        with self.engine.begin() as conn:
            return conn.execute(self._receipt_insert, row).first() is not None

    def receipt_seen(self, sender: str, unique_key: str) -> bool:
        """Was this delivery key of this sender remembered already? A read: the remembering itself is
        ``enqueue``'s, in the inbox transaction."""
        with self._read() as conn:  # every webhook, once per route that reads it
            params = {"sender": sender, "unique_key": unique_key}
            return conn.execute(_RECEIPT_SEEN, params).first() is not None

    # ------------------------------------------------------------------ route state
    def route_state_get(self, route: str) -> RouteState | None:
        with self._read() as conn:
            row = conn.execute(select(route_state).where(route_state.c.route == route)).first()
        return RouteState(row.route, row.status, row.paused_until_ms, row.reason) if row else None

    def route_state_set(
        self, route: str, status: str, reason: str | None, paused_until_ms: int | None = None
    ) -> None:
        ts = self.clock()
        values = {"status": status, "reason": reason, "paused_until_ms": paused_until_ms, "updated_at_ms": ts}
        stmt = self._insert(route_state).values(route=route, **values)
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["route"], set_=values))


def _bind(name: str) -> Any:
    return bindparam(name)


__all__ = [
    "UNCHECKED",
    "DeadLetter",
    "Effect",
    "EffectState",
    "Instance",
    "Message",
    "MessageStatus",
    "NewDeadLetter",
    "NewMessage",
    "RouteState",
    "Store",
    "is_unavailable",
    "normalise_url",
]
