"""The near-real-time billing summary: cursors over confirmed deliveries, invoices and usage seen, and the
summary per customer and currency (docs/usage.md, "The billing summary").

Revision ID: 0006_summary
Revises: 0004_fencing
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_summary"
down_revision = "0004_fencing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "summary_cursors",
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "summary_invoices",
        sa.Column("lago_id", sa.String(100), primary_key=True),
        sa.Column("customer", sa.String(200), nullable=False, index=True),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.Column("facts", sa.Text, nullable=False),
    )
    op.create_table(
        "summary_usage",
        sa.Column("subscription", sa.String(200), primary_key=True),
        sa.Column("metric", sa.String(255), primary_key=True),
        sa.Column("period_start", sa.String(40), primary_key=True),
        sa.Column("customer", sa.String(200), nullable=False, index=True),
        sa.Column("state", sa.Text, nullable=False),
    )
    op.create_table(
        "billing_summaries",
        sa.Column("customer", sa.String(200), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("doc", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("sf_version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("sf_at_ms", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    for table in ("billing_summaries", "summary_usage", "summary_invoices", "summary_cursors"):
        op.drop_table(table)
