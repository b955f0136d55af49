"""Live delivering processes with a heartbeat (``instances``): leases of a live process are never released
by another one, and operator commands leave delivery to a running hub.

Revision ID: 0003_instances
Revises: 0002_confirmed_seq
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_instances"
down_revision = "0002_confirmed_seq"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("instance", sa.String(100), primary_key=True),
        sa.Column("worker_id", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instances")
