"""The web console: people's accounts, the ledger's verifications, and the indexes its
reports read.

``console_users`` holds who may sign in to ``vdx console run`` (name, role ``auditor`` or
``admin``, an Argon2id hash, the failed-login counter and lock); ``ledger_checks`` keeps
each run of the ledger's verification, so the overview can show the last one. The new
indexes let the console count receipts per kind and day, refusals per code and day, and
pending deliveries, find a document's packages and statuses (``document_id``,
``refers_to``) and search documents by period, without scanning the journal.

Revision ID: 0010_console
Revises: 0009_wide_ids
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_console"
down_revision = "0009_wide_ids"
branch_labels = None
depends_on = None

_WIDE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_INDEXES = (
    ("ix_documents_document_id", "documents", ["document_id"]),
    ("ix_documents_refers_to", "documents", ["refers_to"]),
    ("ix_documents_received_at", "documents", ["received_at"]),
    ("ix_deliveries_confirmed_at", "deliveries", ["confirmed_at"]),
    ("ix_receipts_kind_created_at", "receipts",
     ["kind", "created_at", "error_code", "addressee", "recipient"]),
)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('auditor', 'admin')", name="ck_console_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_console_users"),
        sa.UniqueConstraint("name", name="uq_console_users_name"),
    )
    op.create_table(
        "ledger_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("intact", sa.Boolean(), nullable=False),
        sa.Column("entries", _WIDE, nullable=False),
        sa.Column("head_seq", _WIDE, nullable=True),
        sa.Column("receipts", _WIDE, nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("first_fault_seq", _WIDE, nullable=True),
        sa.Column("head_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_checks"),
    )
    op.create_index("ix_ledger_checks_at", "ledger_checks", ["at"])
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
    # ix_receipts_kind_created_at starts with kind: the single-column index is one more
    # to maintain on every receipt the hub writes, for nothing.
    op.drop_index("ix_receipts_kind", table_name="receipts")


def downgrade() -> None:
    op.create_index("ix_receipts_kind", "receipts", ["kind"])
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_ledger_checks_at", table_name="ledger_checks")
    op.drop_table("ledger_checks")
    op.drop_table("console_users")
