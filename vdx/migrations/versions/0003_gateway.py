"""The VXP gateway: connected systems, their nodes and signers, replay guard, mailbox, sent.

Revision ID: 0003_gateway
Revises: 0002_journal
Create Date: 2026-11-22

Written by hand to match vdx/gateway.py and the constraint naming convention of
vdx/store.py on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_gateway"
down_revision = "0002_journal"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_systems",
        sa.Column("system_id", sa.String(128), nullable=False),
        sa.Column("secret", sa.String(512), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("system_id", name="pk_gateway_systems"),
    )

    op.create_table(
        "gateway_system_nodes",
        sa.Column("system_id", sa.String(128), nullable=False),
        sa.Column("node_code", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["system_id"], ["gateway_systems.system_id"],
                                name="fk_gateway_system_nodes_system_id_gateway_systems"),
        sa.ForeignKeyConstraint(["node_code"], ["nodes.code"],
                                name="fk_gateway_system_nodes_node_code_nodes"),
        sa.PrimaryKeyConstraint("system_id", "node_code", name="pk_gateway_system_nodes"),
    )
    op.create_index("ix_gateway_system_nodes_node_code", "gateway_system_nodes", ["node_code"])

    op.create_table(
        "gateway_signers",
        sa.Column("node_code", sa.String(64), nullable=False),
        sa.Column("key_path", sa.Text(), nullable=False),
        sa.Column("cert_path", sa.Text(), nullable=False),
        sa.Column("configured_at", UTC_TIME, nullable=False),
        sa.Column("configured_by", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(["node_code"], ["nodes.code"],
                                name="fk_gateway_signers_node_code_nodes"),
        sa.PrimaryKeyConstraint("node_code", name="pk_gateway_signers"),
    )

    op.create_table(
        "gateway_nonces",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("system_id", sa.String(128), nullable=False),
        sa.Column("seen_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_gateway_nonces"),
    )
    op.create_index("ix_gateway_nonces_seen_at", "gateway_nonces", ["seen_at"])

    op.create_table(
        "gateway_mailbox",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("node_code", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(64), nullable=True),
        sa.Column("document_id", sa.String(512), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_desc", sa.String(512), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_gateway_mailbox"),
    )
    op.create_index("ix_gateway_mailbox_listing", "gateway_mailbox",
                    ["node_code", "kind", "state"])

    op.create_table(
        "gateway_sent",
        sa.Column("doc_id", sa.String(36), nullable=False),
        sa.Column("system_id", sa.String(128), nullable=False),
        sa.Column("from_code", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("published_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("document_id", sa.String(512), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("notation", sa.String(512), nullable=True),
        sa.Column("signed_by_gateway", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("sent_at", UTC_TIME, nullable=False),
        sa.Column("published_at", UTC_TIME, nullable=True),
        sa.Column("send_status", sa.String(16), nullable=False),
        sa.Column("send_status_desc", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("doc_id", name="pk_gateway_sent"),
        sa.UniqueConstraint("from_code", "sha256", name="uq_gateway_sent_from_code"),
    )
    op.create_index("ix_gateway_sent_system_id", "gateway_sent", ["system_id"])
    op.create_index("ix_gateway_sent_published_sha256", "gateway_sent", ["published_sha256"])

    op.create_table(
        "gateway_sent_recipients",
        sa.Column("doc_id", sa.String(36), nullable=False),
        sa.Column("to_code", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=True),
        sa.Column("delivered_at", UTC_TIME, nullable=True),
        sa.Column("receive_status", sa.String(2), nullable=True),
        sa.Column("receive_status_desc", sa.String(512), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["doc_id"], ["gateway_sent.doc_id"],
                                name="fk_gateway_sent_recipients_doc_id_gateway_sent"),
        sa.PrimaryKeyConstraint("doc_id", "to_code", name="pk_gateway_sent_recipients"),
    )


def downgrade() -> None:
    for table in ("gateway_sent_recipients", "gateway_sent", "gateway_mailbox",
                  "gateway_nonces", "gateway_signers", "gateway_system_nodes",
                  "gateway_systems"):
        op.drop_table(table)
