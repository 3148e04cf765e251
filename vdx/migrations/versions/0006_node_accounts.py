"""Each node records its broker user, which is named per vhost from now on.

Revision ID: 0006_node_accounts
Revises: 0005_gateway_policy
Create Date: 2026-12-05

Broker users are global while vhosts are not, so a node's account is now named
``CODE@VHOST`` outside the default vhost (:func:`vdx.broker.provision.node_account`). Nodes
registered before this revision logged in as their bare code: that name is recorded for
them, so nothing changes for a running hub. ``vdx init`` lists the nodes whose account is
not yet named per vhost, and ``vdx node credentials CODE --reset`` moves one (a password
is never stored, so moving needs a new one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_node_accounts"
down_revision = "0005_gateway_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("broker_user", sa.String(200), nullable=True))
    nodes = sa.table("nodes", sa.column("code", sa.String(64)),
                     sa.column("broker_user", sa.String(200)))
    op.execute(nodes.update().values(broker_user=nodes.c.code))
    with op.batch_alter_table("nodes") as batch:
        batch.alter_column("broker_user", existing_type=sa.String(200), nullable=False)
        batch.create_unique_constraint("uq_nodes_broker_user", ["broker_user"])


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_constraint("uq_nodes_broker_user", type_="unique")
        batch.drop_column("broker_user")
