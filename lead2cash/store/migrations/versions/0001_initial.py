"""Initial state store: messages, effect ledger, checkpoints, cross-references, dead letters.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(500), nullable=False),
        sa.Column("ordering_key", sa.String(500)),
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("source_payload", sa.Text),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_expires_at_ms", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("target_ref", sa.String(500)),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("route", "idempotency_key", name="uq_messages_route_key"),
    )
    op.create_index("ix_messages_claim", "messages", ["route", "status", "next_attempt_at_ms"])
    op.create_index("ix_messages_ordering", "messages", ["route", "ordering_key", "status", "id"])
    op.create_table(
        "effects",
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(500), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("target_ref", sa.String(500)),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("message_id", sa.BigInteger),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("target", "idempotency_key", name="pk_effects"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "checkpoint_history",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("previous", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_checkpoint_history_source", "checkpoint_history", ["source", "id"])
    op.create_table(
        "xrefs",
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("canonical_id", sa.String(200), nullable=False),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("system_id", sa.String(200), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "canonical_id", "system", name="pk_xrefs"),
        sa.UniqueConstraint("entity_type", "system", "system_id", name="uq_xrefs_system_id"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("message_id", sa.BigInteger),
        sa.Column("idempotency_key", sa.String(500)),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("original_payload", sa.Text, nullable=False),
        sa.Column("canonical_payload", sa.Text),
        sa.Column("error_class", sa.String(20), nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trace_id", sa.String(64)),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_dead_letters_route_status", "dead_letters", ["route", "status"])
    op.create_table(
        "inbound_receipts",
        sa.Column("sender", sa.String(100), nullable=False),
        sa.Column("unique_key", sa.String(300), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("sender", "unique_key", name="pk_inbound_receipts"),
    )
    op.create_table(
        "route_state",
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("paused_until_ms", sa.BigInteger),
        sa.Column("reason", sa.Text),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "route_state",
        "inbound_receipts",
        "dead_letters",
        "xrefs",
        "checkpoint_history",
        "checkpoints",
        "effects",
        "messages",
    ):
        op.drop_table(table)
