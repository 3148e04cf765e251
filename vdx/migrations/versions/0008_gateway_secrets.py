"""Gateway systems' secrets encrypted at rest.

Revision ID: 0008_gateway_secrets
Revises: 0007_node_limits
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0008_gateway_secrets"
down_revision = "0007_node_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
