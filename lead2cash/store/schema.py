"""Tables of the state store (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Timestamps are epoch milliseconds (BigInteger): identical ordering and arithmetic on SQLite and
PostgreSQL, no timezone conversion by either driver.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only aliases INTEGER PRIMARY KEY to its rowid; BigInteger keeps 64-bit ids on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")

messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("route", String(200), nullable=False),
    Column("idempotency_key", String(500), nullable=False),
    Column("ordering_key", String(500)),
    Column("entity_type", String(100), nullable=False),
    Column("payload", Text, nullable=False),
    Column("source_payload", Text),
    Column("status", String(20), nullable=False),  # pending | delivered | dead | discarded
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at_ms", BigInteger, nullable=False),
    Column("lease_owner", String(100)),
    Column("lease_expires_at_ms", BigInteger),
    # The fencing token: raised by every claim. Ledger steps and outcomes are written only under the token
    # the writer claimed with, so a worker that lost its lease (it stalled past it) writes nothing.
    Column("lease_token", BigInteger, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("target_ref", String(500)),
    Column("trace_id", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # Assigned when the message becomes delivered, in commit order per route (see ``sequences``): a
    # route reading another's confirmations reads them by this, so a late one (a replayed dead letter)
    # is never behind its checkpoint.
    Column("confirmed_seq", BigInteger),
    UniqueConstraint("route", "idempotency_key", name="uq_messages_route_key"),
    Index("ix_messages_claim", "route", "status", "next_attempt_at_ms"),
    Index("ix_messages_ordering", "route", "ordering_key", "status", "id"),
    Index("ix_messages_confirmed", "route", "confirmed_seq"),
)

# Counters taken under a row lock held to commit, so numbers become visible in the order they were
# given: ``confirmed:<route>`` numbers that route's confirmations.
sequences = Table(
    "sequences",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

effects = Table(
    "effects",
    metadata,
    Column("target", String(200), nullable=False),
    Column("idempotency_key", String(500), nullable=False),
    Column("state", String(20), nullable=False),  # reserved | sent | confirmed
    Column("target_ref", String(500)),
    Column("route", String(200), nullable=False),
    Column("message_id", BigInteger),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("target", "idempotency_key", name="pk_effects"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

checkpoint_history = Table(
    "checkpoint_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),
    Column("value", Text, nullable=False),
    Column("previous", Text),
    Column("reason", Text, nullable=False),
    Column("changed_at_ms", BigInteger, nullable=False),
    Index("ix_checkpoint_history_source", "source", "id"),
)

xrefs = Table(
    "xrefs",
    metadata,
    Column("entity_type", String(100), nullable=False),
    Column("canonical_id", String(200), nullable=False),
    Column("system", String(100), nullable=False),
    Column("system_id", String(200), nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("entity_type", "canonical_id", "system", name="pk_xrefs"),
    UniqueConstraint("entity_type", "system", "system_id", name="uq_xrefs_system_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("route", String(200), nullable=False),
    Column("message_id", BigInteger),
    Column("idempotency_key", String(500)),
    Column("stage", String(20), nullable=False),  # mapping | delivery
    Column("original_payload", Text, nullable=False),
    Column("canonical_payload", Text),
    Column("error_class", String(20), nullable=False),  # permanent | exhausted | invalid
    Column("error_message", Text, nullable=False),
    Column("attempts", Text, nullable=False),  # JSON list of {at_ms, error}
    Column("status", String(20), nullable=False),  # open | replayed | discarded
    Column("trace_id", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index("ix_dead_letters_route_status", "route", "status"),
)

inbound_receipts = Table(
    "inbound_receipts",
    metadata,
    Column("sender", String(100), nullable=False),
    Column("unique_key", String(300), nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("sender", "unique_key", name="pk_inbound_receipts"),
)

route_state = Table(
    "route_state",
    metadata,
    Column("route", String(200), primary_key=True),
    Column("status", String(20), nullable=False),  # running | paused | halted
    Column("paused_until_ms", BigInteger),
    Column("reason", Text),
    Column("updated_at_ms", BigInteger, nullable=False),
)

# One worker at a time polls a source: the one holding its lease (taken over once it expires). ``token``
# rises with every change of owner.
source_leases = Table(
    "source_leases",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
)

# Processes that deliver from this store (hubs, and operator commands while they deliver), with a heartbeat:
# an instance whose row has not expired is alive, and its leases are never released by anybody else.
instances = Table(
    "instances",
    metadata,
    Column("instance", String(100), primary_key=True),
    Column("worker_id", String(100), nullable=False),  # the lease owner it claims as
    Column("role", String(20), nullable=False),  # hub | operator
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
)

# The near-real-time billing summary (lead2cash/summary): what the keeper learnt from confirmed deliveries.
# ``summary_cursors``: per route, the last confirmation number applied (moved in the same transaction).
summary_cursors = Table(
    "summary_cursors",
    metadata,
    Column("route", String(200), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
# The latest state of each invoice seen (facts in minor units, as JSON), by Lago's updated_at.
summary_invoices = Table(
    "summary_invoices",
    metadata,
    Column("lago_id", String(100), primary_key=True),
    Column("customer", String(200), nullable=False, index=True),
    Column("updated", String(40), nullable=False),
    Column("facts", Text, nullable=False),
)
# Aggregated usage of one subscription's metric over one billing period (JSON state: count, sum, max,
# distinct values with their last operation).
summary_usage = Table(
    "summary_usage",
    metadata,
    Column("subscription", String(200), primary_key=True),
    Column("metric", String(255), primary_key=True),
    Column("period_start", String(40), primary_key=True),
    Column("customer", String(200), nullable=False, index=True),
    Column("state", Text, nullable=False),
)
# The summary per customer and currency (JSON document, amounts in minor units); ``version`` rises with
# every change, ``sf_version`` is the version last written to Salesforce.
billing_summaries = Table(
    "billing_summaries",
    metadata,
    Column("customer", String(200), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("doc", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("sf_version", BigInteger, nullable=False, server_default="0"),
    Column("sf_at_ms", BigInteger, nullable=False, server_default="0"),
)
