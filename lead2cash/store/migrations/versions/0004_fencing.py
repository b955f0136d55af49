"""Fencing tokens and source leases for several workers on one store.

``messages.lease_token`` counts the claims of a message: a worker's ledger steps and outcomes are written only
while the message still carries the token it claimed with, so a worker that stalled past its lease (and lost
the message to another one) writes nothing. ``source_leases``: one worker at a time polls a source.

Revision ID: 0004_fencing
Revises: 0003_instances
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_fencing"
down_revision = "0003_instances"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "source_leases",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("source_leases")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("lease_token")
