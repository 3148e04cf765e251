"""Per-node rate and volume limits.

Revision ID: 0007_node_limits
Revises: 0006_node_accounts
Create Date: 2026-12-05

Each node may have a rate (packages per second, with a burst) and a volume (bytes of
packages per UTC day) that the hub enforces (:mod:`vdx.hub.limits`); none by default, so
nothing changes for existing nodes. ``node_usage`` holds what each limited node used.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_node_limits"
down_revision = "0006_node_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("rate_per_second", sa.Double(), nullable=True))
        batch.add_column(sa.Column("burst", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_bytes_per_day", sa.BigInteger(), nullable=True))
    op.create_table(
        "node_usage",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("bytes_today", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["code"], ["nodes.code"], name="fk_node_usage_code_nodes"),
        sa.PrimaryKeyConstraint("code", name="pk_node_usage"),
    )


def downgrade() -> None:
    op.drop_table("node_usage")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("max_bytes_per_day")
        batch.drop_column("burst")
        batch.drop_column("rate_per_second")
