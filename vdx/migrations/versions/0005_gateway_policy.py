"""The gateway judges each system's requests by its own settings: policy, zone, addresses.

Revision ID: 0005_gateway_policy
Revises: 0004_inbound
Create Date: 2026-12-05

Systems registered before this revision keep today's behaviour: ``strict`` (fresh
timestamps, no replays), zone ``auto`` (read as Vietnam time or UTC) and any address.
Each remembered signature gets the moment until which it must be kept; the rows already
there are kept a day, longer than any replay window the gateway accepts
(``vdx gateway run --replay-window`` is at most 86,400 s).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from vdx.store import UtcDateTime

revision = "0005_gateway_policy"
down_revision = "0004_inbound"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("gateway_systems") as batch:
        batch.add_column(sa.Column("policy", sa.String(16), nullable=False,
                                   server_default="strict"))
        batch.add_column(sa.Column("zone", sa.String(32), nullable=False,
                                   server_default="auto"))
        batch.add_column(sa.Column("allow_from", sa.Text(), nullable=False,
                                   server_default=""))

    op.add_column("gateway_nonces", sa.Column("keep_until", UTC_TIME, nullable=True))
    nonces = sa.table("gateway_nonces", sa.column("key", sa.String(200)),
                      sa.column("seen_at", UtcDateTime()),
                      sa.column("keep_until", UtcDateTime()))
    connection = op.get_bind()
    # Row by row in Python: date arithmetic differs between SQLite and PostgreSQL, and the
    # table holds minutes of traffic at most.
    for key, seen_at in connection.execute(sa.select(nonces.c.key, nonces.c.seen_at)).all():
        connection.execute(nonces.update().where(nonces.c.key == key)
                           .values(keep_until=seen_at + timedelta(days=1)))
    with op.batch_alter_table("gateway_nonces") as batch:
        batch.alter_column("keep_until", existing_type=UTC_TIME, nullable=False)
        batch.create_index("ix_gateway_nonces_keep_until", ["keep_until"])


def downgrade() -> None:
    with op.batch_alter_table("gateway_nonces") as batch:
        batch.drop_index("ix_gateway_nonces_keep_until")
        batch.drop_column("keep_until")
    with op.batch_alter_table("gateway_systems") as batch:
        for column in ("allow_from", "zone", "policy"):
            batch.drop_column(column)

