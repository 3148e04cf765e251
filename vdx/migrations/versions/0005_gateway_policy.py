"""The gateway judges each system's requests by its own settings: policy, zone, addresses.

Revision ID: 0005_gateway_policy
Revises: 0004_inbound
Create Date: 2026-12-05

Systems registered before this revision keep exactly the behaviour they had: ``strict``
(fresh timestamps, no replays), zone ``Asia/Ho_Chi_Minh`` (the only reading there was)
and any address. Not ``auto``: their signatures were remembered for two windows only, so
a UTC reading, seven hours ahead, would let a request accepted in the seven hours before
the upgrade be replayed. New systems get ``auto``.

Each remembered signature gets the moment until which it must be kept, as the gateway
now computes it: its latest reading (Vietnam time or UTC) plus the widest replay window
the gateway accepts (``vdx gateway run --replay-window`` is at most 86,400 s); for a row
already there, whose reading is known only to lie within one window of ``seen_at``,
``seen_at`` plus two days and seven hours (``KEEP_EXISTING``).
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
# A row already there: its Vietnam-time reading lies within one window (at most a day) of
# seen_at, its UTC reading seven hours later, and it outlives the widest window (a day).
KEEP_EXISTING = timedelta(days=2, hours=7)


def upgrade() -> None:
    with op.batch_alter_table("gateway_systems") as batch:
        batch.add_column(sa.Column("policy", sa.String(16), nullable=False,
                                   server_default="strict"))
        batch.add_column(sa.Column("zone", sa.String(32), nullable=False,
                                   server_default="auto"))  # new systems
        batch.add_column(sa.Column("allow_from", sa.Text(), nullable=False,
                                   server_default=""))

    systems = sa.table("gateway_systems", sa.column("zone", sa.String(32)))
    op.get_bind().execute(systems.update().values(zone="Asia/Ho_Chi_Minh"))  # every one there

    op.add_column("gateway_nonces", sa.Column("keep_until", UTC_TIME, nullable=True))
    nonces = sa.table("gateway_nonces", sa.column("key", sa.String(200)),
                      sa.column("seen_at", UtcDateTime()),
                      sa.column("keep_until", UtcDateTime()))
    connection = op.get_bind()
    # Row by row in Python: date arithmetic differs between SQLite and PostgreSQL, and the
    # table holds two replay windows of traffic at most.
    for key, seen_at in connection.execute(sa.select(nonces.c.key, nonces.c.seen_at)).all():
        connection.execute(nonces.update().where(nonces.c.key == key)
                           .values(keep_until=seen_at + KEEP_EXISTING))
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

