"""The hub's journal: documents, deliveries, receipts, outbox, ledger, attempts.

Revision ID: 0002_journal
Revises: 0001_registry
Create Date: 2026-11-22

Written by hand to match vdx/journal.py and the constraint naming convention of
vdx/store.py on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_journal"
down_revision = "0001_registry"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("document_id", sa.String(512), nullable=False),
        sa.Column("status_code", sa.String(2), nullable=True),
        sa.Column("business_type", sa.Integer(), nullable=True),
        sa.Column("refers_to", sa.String(512), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
    )
    op.create_index("ix_documents_sender_docid", "documents", ["sender", "document_id"])
    op.create_index("ix_documents_sha256", "documents", ["sha256"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("document_pk", sa.Integer(), nullable=False),
        sa.Column("dedup_key", sa.String(700), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("document_id", sa.String(512), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("confirmed_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(["document_pk"], ["documents.id"],
                                name="fk_deliveries_document_pk_documents"),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("dedup_key", name="uq_deliveries_dedup_key"),
    )
    op.create_index("ix_deliveries_document_pk", "deliveries", ["document_pk"])
    op.create_index("ix_deliveries_document_id", "deliveries", ["document_id"])
    op.create_index("ix_deliveries_recipient", "deliveries", ["recipient"])

    op.create_table(
        "receipts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("addressee", sa.String(64), nullable=False),
        sa.Column("document_id", sa.String(512), nullable=True),
        sa.Column("recipient", sa.String(64), nullable=True),
        sa.Column("delivery_id", sa.String(36), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("status_code", sa.String(2), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_receipts"),
    )
    for column in ("kind", "addressee", "document_id", "created_at"):
        op.create_index(f"ix_receipts_{column}", "receipts", [column])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=True),
        sa.Column("receipt_id", sa.String(36), nullable=True),
        sa.Column("routing_key", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("published_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"],
                                name="fk_outbox_delivery_id_deliveries"),
        sa.ForeignKeyConstraint(["receipt_id"], ["receipts.id"],
                                name="fk_outbox_receipt_id_receipts"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])

    op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("document_id", sa.String(512), nullable=True),
        sa.Column("sender", sa.String(64), nullable=True),
        sa.Column("recipient", sa.String(64), nullable=True),
        sa.Column("receipt_id", sa.String(36), nullable=True),
        sa.Column("receipt_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("hub_signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger"),
    )
    op.create_index("ix_ledger_document_id", "ledger", ["document_id"])

    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_head"),
    )

    op.create_table(
        "attempts",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_attempts"),
    )


def downgrade() -> None:
    for table in ("attempts", "ledger_head", "ledger", "outbox", "receipts", "deliveries",
                  "documents"):
        op.drop_table(table)
