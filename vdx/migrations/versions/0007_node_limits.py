"""Per-node rate and volume limits.

Revision ID: 0007_node_limits
Revises: 0006_node_accounts
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0007_node_limits"
down_revision = "0006_node_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
