"""outbox.id and ledger.seq become 64-bit.

PostgreSQL: ``outbox.id``, ``ledger.seq`` and ``ledger_head.seq`` become ``bigint``, and
so does the sequence behind ``outbox.id`` (a ``serial``'s sequence is ``AS integer`` and
would stop at 2^31 - 1 whatever the column's type). SQLite: nothing to do, its INTEGER
is already 64-bit (and ``vdx.store.WideId`` keeps ``outbox.id`` an INTEGER PRIMARY KEY
there, so it still autoincrements).

Revision ID: 0009_wide_ids
Revises: 0008_gateway_secrets
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_wide_ids"
down_revision = "0008_gateway_secrets"
branch_labels = None
depends_on = None

_COLUMNS = (("outbox", "id"), ("ledger", "seq"), ("ledger_head", "seq"))


def upgrade() -> None:
    _retype(sa.Integer(), sa.BigInteger(), "bigint")


def downgrade() -> None:
    # Refused by PostgreSQL (out of range) once a value needs more than 32 bits.
    _retype(sa.BigInteger(), sa.Integer(), "integer")


def _retype(old: sa.types.TypeEngine, new: sa.types.TypeEngine, sequence_type: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)
    sequence = bind.scalar(sa.text("SELECT pg_get_serial_sequence('outbox', 'id')"))
    if sequence is not None:
        # The name comes back quoted as needed (and schema-qualified) by PostgreSQL itself.
        op.execute(f"ALTER SEQUENCE {sequence} AS {sequence_type}")
