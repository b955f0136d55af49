"""Confirmation sequence: messages are numbered per route when they become delivered, so a route that
reads another route's confirmations (the hub source) reads them in commit order, late ones included.

Revision ID: 0002_confirmed_seq
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_confirmed_seq"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("confirmed_seq", sa.BigInteger))
    op.create_index("ix_messages_confirmed", "messages", ["route", "confirmed_seq"])
    op.create_table(
        "sequences",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    # Delivered messages keep their id as their number, so a hub source's checkpoint (the last id it
    # read) stays valid. A message delivered after a replay of its dead letter may lie behind that
    # checkpoint, never read: those are numbered after every other, so the reader offers them once more
    # (its idempotent consumer ignores the ones it had read).
    op.execute("UPDATE messages SET confirmed_seq = id WHERE status = 'delivered'")
    op.execute(
        """
        UPDATE messages SET confirmed_seq = confirmed_seq + (SELECT MAX(m.id) FROM messages m)
        WHERE status = 'delivered' AND id IN (
            SELECT message_id FROM dead_letters
            WHERE stage = 'delivery' AND status = 'replayed' AND message_id IS NOT NULL
        )
        """
    )
    op.execute(
        """
        INSERT INTO sequences (name, value)
        SELECT 'confirmed:' || route, MAX(confirmed_seq) FROM messages
        WHERE confirmed_seq IS NOT NULL GROUP BY route
        """
    )


def downgrade() -> None:
    op.drop_table("sequences")
    op.drop_index("ix_messages_confirmed", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("confirmed_seq")
